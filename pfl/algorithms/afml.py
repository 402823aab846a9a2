"""AFML, from "Towards generalizable personalized federated learning with adaptive
local adaptation" (anonymous authors; cited by title): eq. 4 and Algorithm 1.

The model is split into an encoder f and a classifier head h (the model's
last layer `head`, split by parameter-name prefix, see head_split.py). The encoder's weights are
Gaussian, τ = (θu, θσ); the head θ̂ is deterministic. One round (Alg. 1):

    server   θt = θu + σ ⊙ ε, ε ~ N(0, I)            (line 4: one draw per round, reparameterized)
             sends θt and θ̂                           (line 5: |f| + |h| per client)
    client   S, Q = support (fraction P) / query split of its examples
             φ    = θ̂ - η ∇_θ̂ L(h_θ̂(f_θt(S)))        (inner step(s) on the head)
             L_q  = L(h_φ(f_θt(Q)))                    (the query loss after adaptation)
             L_ENC  = L(h_θ̂(f_θt(Q)))                  (eq. 4: -E_ε log q(y'|θ, x', ε), the GLOBAL model)
             L_CONS = KL(p(z|x', θt) || N(0, I))        (eq. 4, averaged over the query set)
             g_c = ∇_θ̂ L_q                              (Alg. 1: the head's gradient, query loss only)
             g_g = ∇_τ [L_q + α (L_ENC + L_CONS)]        (through θt = θu + σ ⊙ ε)
    server   L_CMPX = KL(N(θu, σ²) || N(0, I))          (eq. 4's β term, "put in the server", §3.5)
             θ̂ -= η1 mean g_c,  τ -= η2 (mean g_g + β ∇τ L_CMPX)   (lines 9-10: two server lrs)

Readings, each the paper's by default, the alternative a setting:

- Weights (`weights`): eq. 4 and Theorem 1 put α on L_ENC and L_CONS and β on
  L_CMPX (`eq4`, default); Alg. 1's box writes α·(L_ENC + L_CONS + β L_CMPX)
  (`alg1`: β is multiplied by α).
- The head's gradient (`head_terms`): Alg. 1 writes g_c = ∇θ̂ L_φ(D′) and §3.5
  regularizes "weights θ of the encoding network and leave[s] the weights of h
  unrestricted" (`query`, default). `query+enc` adds α ∇θ̂ L_ENC: eq. 4's L_ENC is
  the global model's likelihood, so it could train θ̂ too ("a powerful global model", §3.3).
- L_CMPX's scale (`cmpx_scale`): eq. 4 writes + β·KL(p(θ|D, D′) || r(θ)) with no
  1/N′ (unlike the α/N′ of the other terms): the KL of the whole encoder
  distribution, a sum over its parameters, unscaled (`model`, default). At β = 1
  this term outweighs the per-example data terms by orders of magnitude and drives
  θu to 0 and σ to 1 (measured: experiments/afml/README.md, "L_CMPX's scale").
  `per_example` divides it by the client's example count n (the mean over the
  cohort of β·KL/n), the Bayes-by-backprop convention for an objective that is a
  per-example mean, with which β = 1 trains.
- What is exchanged (`exchange`): Alg. 1 distributes θt and θ̂ and the client
  returns g_c and g_g = ∇τ (the gradient w.r.t. the encoder's mean and σ: |h| + 2|f|
  up; `alg1`, default). `compact`: the client returns g_t = ∇θt (|h| + |f| up) and the
  server applies the chain rule through θt = θu + σ ⊙ ε itself (ε is its own draw).
  The maths is the same in both: ∇θu = g_t and ∇log σ = g_t ⊙ ε ⊙ σ are linear in
  g_t, so the code always computes them at the server on the cohort's mean g_t; the
  setting changes only what is counted as sent (`bytes_exchanged`). The client's
  example count n rides on the aggregation weight; clients are averaged equally.
- σ = exp(log σ) with σ0 = `init_sigma`: under a softplus parameterization at
  σ0 = 0.001 the gradient reaching σ carried a factor ~σ0 and σ never moved.
- L_CONS: p(z|x', θt) is the representation read through a Gaussian channel
  N(z, `z_noise`·I) (with a deterministic encoder given θt this is what makes
  it a distribution); its KL to N(0, I) is summed over the representation's
  dimensions and averaged over the counted query positions (eq. 4's 1/N' Σ).
- Inner step(s): full-batch gradient descent on the support set (or a random
  minibatch of `batch_size`), lr η; g_c is exact second-order MAML through the
  head's inner step. Clients are weighted equally (Alg. 1's 1/K Σ).
- Step sizes: the paper gives no values for η, η1, η2. The defaults are FedMeta's
  (inner 0.5, server 1), AFML's closest baseline (MAML on the head instead of the
  whole model), and the best of five settings on the FEMNIST sample at ζ = 0.5
  (seed 0, 100 rounds; experiments/afml/README.md, "Step sizes and α, β"): Pers.5
  0.549 against 0.119 for the earlier 0.1 / 0.1 / 0.1, which left AFML last of all
  methods there. The server takes one step on the cohort's mean gradient per
  round (FedAvg's clients take many), hence lr 1. On `dataset=synthetic_leaf`
  (large raw features) encoder_lr 1 diverges within 100 rounds: use 0.3 there.
- Personalization (Pers.k, the same budget as every method: k epochs over the
  client's training data in minibatches of the personalization client
  optimizer's batch size): the encoder at its mean θu, the head trained by SGD
  with lr `personalize_lr` (null: η, the step AFML trains for).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor
from torch.func import grad, vjp

from pfl import aggregate as agg
from pfl import rng
from pfl.algorithms.base import Algorithm, ClientUpdate, nbytes
from pfl.algorithms.head_split import HeadSplit
from pfl.algorithms.meta import sample_batch, sgd, split_support_query
from pfl.config.errors import check
from pfl.data.federated import ClientData
from pfl.models import HEAD
from pfl.optim import ClientSGD
from pfl.config.settings import integer, number, one_of, optional, setting
from pfl.task import Params

MU = "enc_mu."
LOG_SIGMA = "enc_logsigma."
ENC = "enc."  # g_t, the gradient for θt, in a client's update


def gaussian_kl(mu: Params, log_sigma: Params) -> Tensor:
    """KL(N(μ, σ²) || N(0, I)) of the whole encoder distribution (closed form, summed)."""
    return sum((0.5 * (torch.exp(2 * s) + m * m - 1.0) - s).sum() for m, s in zip(mu.values(), log_sigma.values()))


def channel_kl(z: Tensor, weight: Tensor, noise: float) -> Tensor:
    """KL(N(z, noise·I) || N(0, I)) summed over z's last dimension, averaged over
    positions with `weight` (z: [*positions, dim])."""
    kl = 0.5 * (noise + z * z - 1.0 - math.log(noise))
    return (kl.sum(-1) * weight).sum() / weight.sum().clamp(min=1.0)


def normal_like(key: Tensor, like: Params) -> Params:
    return {k: rng.normal(rng.fold(key, i), tuple(v.shape), v.dtype) for i, (k, v) in enumerate(like.items())}


@dataclass
class AFML(Algorithm):
    support_fraction: float = setting(0.8, number(gt=0, lt=1))  # P: support share of a client's examples
    inner_lr: float = setting(0.5, number(gt=0))  # η: inner step on the head (FedMeta's α; see "Step sizes")
    inner_steps: int = setting(1, integer(ge=1))
    head_lr: float = setting(1.0, number(gt=0))  # η1: server lr of the head (FedMeta's β)
    encoder_lr: float = setting(1.0, number(gt=0))  # η2: server lr of τ = (θu, log σ)
    alpha: float = setting(0.01, number(ge=0))  # weight of L_ENC and L_CONS
    beta: float = setting(1.0, number(ge=0))  # weight of L_CMPX (1: the evidence lower bound's own weight)
    weights: str = setting("eq4", one_of("eq4", "alg1"))  # eq4: β·L_CMPX; alg1: α·β·L_CMPX
    head_terms: str = setting("query", one_of("query", "query+enc"))  # g_c: ∇θ̂ L_q (Alg. 1); +enc: also α∇θ̂ L_ENC
    cmpx_scale: str = setting("model", one_of("model", "per_example"))  # β·KL (eq. 4); per_example: β·KL/n
    exchange: str = setting("alg1", one_of("alg1", "compact"))  # bytes: up g_c + ∇τ (alg1) or g_c + ∇θt (compact)
    init_sigma: float = setting(0.01, number(gt=0))  # σ0, the initial encoder weight std
    z_noise: float = setting(0.1, number(gt=0))  # variance of the representation channel in L_CONS
    batch_size: Optional[int] = setting(None, optional(integer(ge=1)))  # support/query minibatch (null: the whole sets)
    personalize_lr: Optional[float] = setting(None, optional(number(gt=0)))  # Pers.k head SGD lr (null: inner_lr)

    def __post_init__(self):
        super().__post_init__()
        self._splits: dict[int, HeadSplit] = {}

    # -- server state ----------------------------------------------------------
    def _is_head(self, name: str) -> bool:
        return name.startswith(HEAD + ".")

    def init_global(self, model_params: Params) -> Params:
        head = {k: v for k, v in model_params.items() if self._is_head(k)}
        enc = {k: v for k, v in model_params.items() if not self._is_head(k)}
        check(bool(head) and bool(enc), "model", f"parameters {', '.join(list(model_params)[-2:])}, ...",
              f"a model whose last layer is a submodule named `{HEAD}` (an encoder and a head: `{HEAD}.*`)")
        log_s = math.log(self.init_sigma)
        return {**head, **{MU + k: v for k, v in enc.items()},
                **{LOG_SIGMA + k: torch.full_like(v, log_s) for k, v in enc.items()}}

    def init_server_state(self, global_params: Params, num_clients: int | None = None, rounds: int | None = None) -> dict:
        first = next(iter(global_params.values()))
        return {"noise_key": rng.key(0).to(first.device), "l_cmpx": torch.zeros((), device=first.device)}

    @staticmethod
    def _tau(global_params: Params) -> tuple[Params, Params]:
        mu = {k[len(MU):]: v for k, v in global_params.items() if k.startswith(MU)}
        log_s = {k[len(LOG_SIGMA):]: v for k, v in global_params.items() if k.startswith(LOG_SIGMA)}
        return mu, log_s

    def broadcast(self, global_params: Params, key: Tensor, server_state: dict) -> Params:
        """θt (one reparameterized draw for the whole cohort) and θ̂. The round's
        τ and noise key are kept in the server state for the chain rule in `aggregate`."""
        server_state["noise_key"] = key
        server_state["params"] = global_params
        mu, log_s = self._tau(global_params)
        eps = normal_like(key, mu)
        theta_t = {k: mu[k] + torch.exp(log_s[k]) * eps[k] for k in mu}
        return {**theta_t, **{k: v for k, v in global_params.items() if self._is_head(k)}}

    def model_params(self, global_params: Params) -> Params:
        """The deterministic model: encoder at its mean θu, and the head."""
        mu, _ = self._tau(global_params)
        return {**mu, **{k: v for k, v in global_params.items() if self._is_head(k)}}

    def param_groups(self, names: list[str]) -> list[tuple[list[str], dict]]:
        head = [n for n in names if self._is_head(n)]
        enc = [n for n in names if n.startswith(MU) or n.startswith(LOG_SIGMA)]
        return [(head, {"lr": self.head_lr}), (enc, {"lr": self.encoder_lr})]

    def split(self, task) -> HeadSplit:
        if id(task) not in self._splits:
            self._splits[id(task)] = HeadSplit(task)
        return self._splits[id(task)]

    # -- one client --------------------------------------------------------------
    def inner(self, hs: HeadSplit, head: Params, z: Tensor, y: Tensor, mask: Tensor) -> Params:
        for _ in range(self.inner_steps):
            head = sgd(head, grad(hs.loss)(head, z, y, mask), self.inner_lr)
        return head

    def losses(self, hs: HeadSplit, head: Params, theta_t: Params, support, query, key: Tensor):
        """(L_q, L_ENC, L_CONS) as functions of (θ̂, θt)."""
        xs, ys, ms = support
        xq, yq, mq = query
        phi = self.inner(hs, head, hs.features(theta_t, xs, rng.fold(key, 1)), ys, ms)
        zq = hs.features(theta_t, xq, rng.fold(key, 2))
        weight = hs.task._counted(yq, mq).to(zq.dtype)
        return hs.loss(phi, zq, yq, mq), hs.loss(head, zq, yq, mq), channel_kl(zq, weight, self.z_noise)

    def client_update(self, local, sent, data, key, state=None):
        hs = self.split(local.task)
        head = {k: v for k, v in sent.items() if self._is_head(k)}
        theta_t = {k: v for k, v in sent.items() if not self._is_head(k)}
        support, query = split_support_query(data, rng.fold(key, 1), self.support_fraction)
        xs, ys, ms = sample_batch(support, rng.fold(key, 2), self.batch_size)
        xq, yq, mq = sample_batch(query, rng.fold(key, 3), self.batch_size)
        xs, xq = local.augment(support, xs, rng.fold(key, 4)), local.augment(query, xq, rng.fold(key, 5))

        def objective(h, t):
            return self.losses(hs, h, t, (xs, ys, ms), (xq, yq, mq), rng.fold(key, 6))

        (l_q, l_enc, l_cons), pull = vjp(objective, head, theta_t)
        one, zero, a = torch.ones_like(l_q), torch.zeros_like(l_q), torch.full_like(l_q, self.alpha)
        g_c = pull((one, a if self.head_terms == "query+enc" else zero, zero))[0]
        g_t = pull((one, a, a))[1]
        delta = {**g_c, **{ENC + k: v for k, v in g_t.items()}}
        metrics = {"loss": l_q.detach(), "l_enc": l_enc.detach(), "l_cons": l_cons.detach()}
        # the weight carries n (cmpx_scale=per_example needs 1/n); the mean over clients is uniform (`aggregate`)
        return ClientUpdate(delta, data.n.to(l_q.dtype), metrics)

    # -- the server ----------------------------------------------------------------
    def cmpx_weight(self) -> float:
        return self.beta * (self.alpha if self.weights == "alg1" else 1.0)

    def aggregate(self, updates: ClientUpdate, server_state: dict) -> Params:
        """∇ of the cohort's mean objective w.r.t. (θ̂, θu, log σ): the chain rule
        through θt = θu + σ ⊙ ε (either `exchange`: linear in g_t) and L_CMPX, at the server."""
        g = agg.mean(updates.delta)  # Alg. 1: 1/K Σ over the cohort
        head = {k: v for k, v in g.items() if self._is_head(k)}
        g_t = {k[len(ENC):]: v for k, v in g.items() if k.startswith(ENC)}
        params = server_state["params"]
        mu, log_s = self._tau(params)
        eps = normal_like(server_state["noise_key"], mu)
        scale = (1.0 / updates.weight.clamp(min=1.0)).mean() if self.cmpx_scale == "per_example" else 1.0
        w = self.cmpx_weight() * scale
        server_state["l_cmpx"] = (gaussian_kl(mu, log_s) * scale).detach()
        delta = dict(head)
        for k in mu:
            sigma = torch.exp(log_s[k])
            delta[MU + k] = g_t[k] + w * mu[k]
            delta[LOG_SIGMA + k] = g_t[k] * eps[k] * sigma + w * (sigma * sigma - 1.0)
        return delta

    def bytes_exchanged(self, sent: Params, updates: ClientUpdate) -> tuple[int, int]:
        """Down θt and θ̂; up g_c and g_g = (∇θu, ∇log σ): two values per encoder weight
        where g_t has one (`exchange=alg1`), or g_c and g_t (`compact`)."""
        down, up = super().bytes_exchanged(sent, updates)
        if self.exchange == "alg1":
            up += nbytes({k: v[0] for k, v in updates.delta.items() if k.startswith(ENC)})
        return down, up

    def server_update(self, params, delta, optimizer, server_state, updates):
        server_state.pop("params", None)  # this round's τ: not kept across rounds
        return super().server_update(params, delta, optimizer, server_state, updates)

    def server_metrics(self, params: Params, server_state: dict) -> dict[str, Tensor]:
        _, log_s = self._tau(params)
        sigma = torch.cat([torch.exp(v.detach()).reshape(-1) for v in log_s.values()])
        return {"l_cmpx": server_state["l_cmpx"], "sigma_mean": sigma.mean(), "sigma_min": sigma.min(),
                "sigma_max": sigma.max()}

    # -- personalization -----------------------------------------------------------
    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        """Pers.k: k epochs of minibatch SGD on the head over the client's training
        data, the encoder fixed at θu (its features computed once)."""
        hs = self.split(local.task)
        enc, head = hs.split(self.model_params(params))
        z = hs.features(enc, data.x, None)
        feats = ClientData(z, data.y, data.n)  # no augmentation of features
        trainer = local.with_opt(ClientSGD(lr=self.personalize_lr or self.inner_lr, batch_size=local.batch_size))
        trainer.train_by_epoch(head, feats, key, epochs, lambda e, h: on_epoch(e, {**enc, **h}),
                               loss=lambda h, x, y, mask, k: hs.loss(h, x, y, mask))

