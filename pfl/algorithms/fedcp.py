"""FedCP (Zhang, Hua, Wang, Song, Xue, Ma, Guan 2023, "FedCP: Separating feature
information for personalized federated learning via conditional policy", KDD), Alg. 1,
read with the authors' code where the paper leaves a detail open.

The model is a feature extractor φ and a head; FedCP adds a global head W^g (the
model's head, shared), a personalized head W^p_i (per-client state, the global
head at the start) and a Conditional Policy Network (CPN, shared). For a feature
h = φ(x) the CPN reads the conditional input h ⊙ v̂_i and splits h per dimension:

    [r_p; r_g] = ReLU(LayerNorm(A (h ⊙ v̂_i) + a))  (2d values, two rows of d),
    (s_p, s_g) = softmax over the pair of (r + Gumbel noise) / τ,   s_p + s_g = 1,
    logits = W^p (h ⊙ s_p) + W^g (h ⊙ s_g).

v̂_i is client i's vector: the column-wise L1 gap Σ_k |W^p_ik - W^g_k| between its
personalized and the global head, L2-normalized (our reading of the paper's
client-specific vector; 0 while W^p = W^g), computed from the heads a round starts
with and held fixed while it trains (as the authors' code holds it). A client trains φ, W^p and the CPN
for E epochs on CE + λ · MMD²(φ(x), φ^t(x)) (RBF kernels of bandwidths 10, 15,
20, 50; φ^t the received extractor, frozen), with W^g frozen; it then sends Δφ,
ΔCPN and its share of the global head, W^g_i = W^p ⊙ s̄_p + W^g ⊙ s̄_g (columns
scaled by the mean policy over its examples; the weight only). The server
averages all three by examples (Δ = W^g - W^g_i for the head's weight).

With the policy fixed to the personal part (s_p = 1) and λ = 0 a round is FedPer's
(body and own head trained together; the frozen b^g only shifts the own head's bias),
which tests/algorithms/test_fedcp.py checks.
Defaults: λ = 5 (the authors' run script), τ = 1, E = 1 epoch. Evaluation uses
the noise-free policy (the authors keep the Gumbel noise at test time; here a
client's accuracy is deterministic). Bytes: φ, the CPN and W^g down; Δφ, ΔCPN and
W^g_i's weight up. Personalization: FedCP's local training (W^g frozen) for k
epochs from the client's W^p (a held-out client: W^p = W^g).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from pfl import rng
from pfl.algorithms.base import Algorithm, ClientUpdate, LocalEpochs, examples_weight, model_delta
from pfl.algorithms.head_split import HeadSplit, linear_head_weight, split_by_prefix
from pfl.algorithms.pfedhn import _generator, _linear
from pfl.config.settings import number, setting
from pfl.models import HEAD

CPN, OWN, CONTEXT = "cpn.", "personal.", "context.v"
BANDWIDTHS = (10.0, 15.0, 20.0, 50.0)


def mmd2(x: Tensor, y: Tensor, m: Tensor) -> Tensor:
    """The biased MMD² estimate between the rows of x and y [B, d] where m [B] is True (RBF kernels)."""
    w = m.to(x.dtype)
    w = w.unsqueeze(1) * w.unsqueeze(0) / w.sum().clamp(min=1) ** 2

    def k(a, b):
        d2 = (a * a).sum(-1, keepdim=True) - 2 * a @ b.T + (b * b).sum(-1)
        return sum(torch.exp(-0.5 * d2 / s) for s in BANDWIDTHS)

    return (w * (k(x, x) + k(y, y) - 2 * k(x, y))).sum()


@dataclass
class FedCP(LocalEpochs, Algorithm):
    lam: float = setting(5.0, number(ge=0))  # λ: weight of the MMD term
    tau: float = setting(1.0, number(gt=0))  # τ: temperature of the Gumbel-softmax policy

    def init_global(self, model_params):
        w = linear_head_weight(model_params)
        d = w.shape[1]
        a, b = _linear(d, 2 * d, _generator(model_params))
        return {**model_params, CPN + "fc.weight": a, CPN + "fc.bias": b, CPN + "norm.weight": torch.ones(2 * d),
                CPN + "norm.bias": torch.zeros(2 * d)}

    def model_params(self, global_params):
        """The model's parameters (φ and the global head) of a FedCP parameter dict."""
        return {k: v for k, v in global_params.items() if not k.startswith((CPN, OWN, CONTEXT))}

    def init_client_state(self, global_params):
        head = split_by_prefix(self.model_params(global_params))[1]
        return {OWN + k: v.detach().clone() for k, v in head.items()}

    def _vhat(self, p) -> Tensor:
        """v̂: fixed for a round of training (CONTEXT, from the heads it started with), else from p's heads."""
        if CONTEXT in p:
            return p[CONTEXT]
        gap = (p[OWN + HEAD + ".weight"] - p[HEAD + ".weight"]).abs().sum(0)
        return F.normalize(gap, dim=-1)

    def policy(self, p, z: Tensor, key: Tensor | None) -> tuple[Tensor, Tensor]:
        """(s_p, s_g) for features z [..., d]; Gumbel noise from `key` (None: noise-free)."""
        d = z.shape[-1]
        r = (z * self._vhat(p)) @ p[CPN + "fc.weight"].T + p[CPN + "fc.bias"]
        r = F.layer_norm(r, (2 * d,), p[CPN + "norm.weight"], p[CPN + "norm.bias"]).relu()
        r = r.reshape(*r.shape[:-1], 2, d)
        if key is not None:
            u = rng.uniform(rng.fold(key, 0xC9), tuple(r.shape)).clamp(1e-10, 1 - 1e-7)
            r = r - torch.log(-torch.log(u))
        s = torch.softmax(r / self.tau, dim=-2)
        return s[..., 0, :], s[..., 1, :]

    def forward(self, hs: HeadSplit, p, x: Tensor, key: Tensor | None) -> tuple[Tensor, Tensor]:
        """(logits, features) of the FedCP model `p` (model, CPN and OWN head)."""
        z = hs.features(self.model_params(p), x, key)
        s_p, s_g = self.policy(p, z, key)
        own = {k[len(OWN):]: v for k, v in p.items() if k.startswith(OWN)}
        return hs.logits(own, z * s_p) + hs.logits(hs.split(self.model_params(p))[1], z * s_g), z

    def _parts(self, p):
        """(trained: φ, CPN and the OWN head; frozen: the global head and v̂ of the starting heads)."""
        frozen = {k: v for k, v in p.items() if k.startswith(HEAD + ".")}
        return {k: v for k, v in p.items() if k not in frozen}, {**frozen, CONTEXT: self._vhat(p)}

    def loss(self, local, hs: HeadSplit, frozen, reference):
        def fn(trained, x, y, mask, key):
            logits, z = self.forward(hs, {**trained, **frozen}, x, key)
            counted = local.task._counted(y, mask).reshape(-1)
            z_ref = hs.features(self.model_params(reference), x, key)
            flat = lambda t: t.reshape(-1, t.shape[-1])  # noqa: E731
            return local.task.loss_from_logits(logits, y, mask) + self.lam * mmd2(flat(z), flat(z_ref), counted)

        return fn

    def client_update(self, local, sent, data, key, state=None):
        hs = HeadSplit(local.task)
        trained, frozen = self._parts({**sent, **state})
        steps = self.steps(local)
        new, value = local.train(trained, data, key, steps, loss=self.loss(local, hs, frozen, sent))
        p = {**new, **frozen}
        x, y, mask = local.full_batch(data)
        s_p, s_g = self.policy(p, hs.features(self.model_params(p), x, None), None)
        counted = local.task._counted(y, mask).reshape(-1, 1).to(s_p.dtype)
        mean_p = (s_p.reshape(-1, s_p.shape[-1]) * counted).sum(0) / counted.sum().clamp(min=1)
        mean_g = (s_g.reshape(-1, s_g.shape[-1]) * counted).sum(0) / counted.sum().clamp(min=1)
        w = HEAD + ".weight"
        share = p[OWN + w] * mean_p + p[w] * mean_g
        delta = {**model_delta({k: sent[k] for k in new if not k.startswith(OWN)},
                               {k: v for k, v in new.items() if not k.startswith(OWN)}), w: p[w] - share}
        own = {k: v for k, v in new.items() if k.startswith(OWN)}
        return ClientUpdate(delta, examples_weight(data), {"loss": value}, own)

    def personal_model(self, params, state=None):
        head = split_by_prefix(self.model_params(params))[1]
        return {**params, **({OWN + k: v for k, v in head.items()} if state is None else state)}

    def evaluate(self, local, model, test, train):
        x, y, mask = local.full_batch(test)
        logits, _ = self.forward(HeadSplit(local.task), model, x, None)
        counted = local.task._counted(y, mask)
        return ((logits.argmax(-1) == y) & counted).sum(), counted.sum()

    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        hs = HeadSplit(local.task)
        trained, frozen = self._parts(self.personal_model(params, state))
        local.train_by_epoch(trained, data, key, epochs, lambda e, p: on_epoch(e, {**p, **frozen}),
                             loss=self.loss(local, hs, frozen, params))
