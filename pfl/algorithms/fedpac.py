"""FedPAC (Xu, Tong, Huang 2023, "Personalized federated learning with feature
alignment and classifier collaboration", ICLR), Algorithm 1.

The model is a feature extractor θ (shared) and a linear classifier φ (the model's `head`).
Each round the server sends θ, the global class prototypes c_k and client i's
own classifier φ̂_i (`broadcast_each`: kept on the server per training client,
the model's initial head at the start). Client i

1. computes its statistics under the received θ (Sec. 4.3): the class prior
   p_i(k), h_i^k = p_i(k)·μ_i^k (μ: class-mean feature) and the variance term
   V_i = (Σ_k p_i(k)·E[‖z‖² | k] - Σ_k p_i(k)²·‖μ_i^k‖²) / n_i;
2. trains φ for `head_epochs` epochs with θ fixed, then θ for `body_epochs`
   epochs with φ fixed on CE + λ·mean ‖f(x) - c_y‖² / d (feature alignment, Eq. (5));
3. sends θ_i (Δ = θ - θ_i), φ_i, its local prototypes with counts, h_i and V_i.

The server averages θ (weighted by examples) and the prototypes per class (by
counts, Eq. (6)); for every client i of the cohort it solves the QP of Eq. (10)

    α_i = argmin_{α ≥ 0, Σ α = 1}  α^T (diag(V) + D_i) α,
    (D_i)_{jj'} = Σ_k <h_i^k - h_j^k, h_i^k - h_j'^k>,

over the cohort's clients j, j' (projected gradient descent on the simplex),
and stores φ̂_i = Σ_j α_ij φ_j (Eq. (9)) for client i's next round and evaluation.
`collaborate=false` keeps each client's own φ_i (the paper's ablation); with it
and λ = 0 a round is FedRep's (head epochs, then body epochs), which
tests/algorithms/test_fedpac.py checks.

Defaults: λ = 1 and one classifier epoch (the paper's settings as we read them);
`body_epochs` = 5 is our reading of the paper's E = 5 local epochs. Classes with no global prototype are not aligned.
Personalization: the classifier alone, θ fixed (FedPAC's classifier step), from
φ̂_i (a training client) or the model's initial head (a held-out client).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pfl import rng
from pfl.algorithms.base import Algorithm, ClientUpdate, examples_weight, model_delta
from pfl.algorithms.fedproto import COUNT, MEAN, PRESENT, aligned_loss, average_prototypes, class_sums
from pfl.algorithms.fedrep import FedRep, _with_fixed
from pfl.algorithms.head_split import HeadSplit, linear_head_weight, split_by_prefix
from pfl.config.errors import check
from pfl.config.settings import boolean, integer, number, setting

HEADS = "fedpac.heads."  # + a head parameter's name: [N, ...], each training client's φ̂_i


def simplex_qp(P: Tensor, iters: int = 5000, tol: float = 1e-9) -> Tensor:
    """argmin_{α ≥ 0, Σα = 1} α^T P α (P symmetric PSD [C, C]) by projected gradient descent, until
    no coordinate moves by more than `tol` (at most `iters` steps)."""
    C = P.shape[0]
    alpha = torch.full((C,), 1.0 / C, dtype=P.dtype, device=P.device)
    step = 1.0 / (2 * torch.linalg.eigvalsh(P).max().clamp(min=1e-12))
    for _ in range(iters):
        v = alpha - step * 2 * (P @ alpha)
        u = torch.sort(v, descending=True).values  # projection onto the simplex (sort and threshold)
        css = u.cumsum(0) - 1
        rho = int((u - css / torch.arange(1, C + 1, dtype=P.dtype, device=P.device) > 0).nonzero().max())
        new = (v - css[rho] / (rho + 1)).clamp(min=0)
        done = bool((new - alpha).abs().max() <= tol)
        alpha = new
        if done:
            break
    return alpha


def statistics(z: Tensor, y: Tensor, counted: Tensor, classes: int) -> tuple[Tensor, Tensor]:
    """(h [K, d] = p(k)·μ_k, V) of one client's features (step 1)."""
    sums, counts = class_sums(z, y, counted, classes)
    sq, _ = class_sums((z * z).sum(-1, keepdim=True), y, counted, classes)
    n = counts.sum().clamp(min=1)
    p, mu = counts / n, sums / counts.clamp(min=1).unsqueeze(-1)
    v = ((p * sq[:, 0] / counts.clamp(min=1)).sum() - (p * p * (mu * mu).sum(-1)).sum()) / n
    return p.unsqueeze(-1) * mu, v


def combination_weights(h: Tensor, v: Tensor) -> Tensor:
    """α [C, C]: row i solves Eq. (10) for client i from the cohort's h [C, K, d] and V [C]."""
    rows = []
    for i in range(h.shape[0]):
        diff = (h[i].unsqueeze(0) - h).flatten(1)  # [C, K·d]
        rows.append(simplex_qp(torch.diag(v) + diff @ diff.T))
    return torch.stack(rows)


@dataclass
class FedPAC(Algorithm):
    head_epochs: int = setting(1, integer(ge=1))  # epochs of the classifier, θ fixed
    body_epochs: int = setting(5, integer(ge=1))  # epochs of the feature extractor, φ fixed
    lam: float = setting(1.0, number(ge=0))  # λ: weight of the feature alignment
    collaborate: bool = setting(True, boolean())  # false: no classifier combination (each keeps φ_i)

    def epochs(self, local, e):
        return local.epochs(e)

    def init_global(self, model_params):
        w = linear_head_weight(model_params)
        return {**model_params, MEAN: torch.zeros_like(w), COUNT: torch.zeros_like(w[:, 0])}

    def init_population(self, global_params, num_clients):
        head = split_by_prefix(self.model_params(global_params))[1]
        table = {HEADS + k: v.unsqueeze(0).repeat(num_clients, *[1] * v.dim()) for k, v in head.items()}
        return {**global_params, **table}

    def model_params(self, global_params):
        return {k: v for k, v in global_params.items() if not k.startswith(("prototypes.", HEADS))}

    def broadcast(self, global_params, key, server_state):
        body = split_by_prefix(self.model_params(global_params))[0]
        return {**body, MEAN: global_params[MEAN], PRESENT: global_params[COUNT] > 0}

    def broadcast_each(self, global_params, ids):
        return {k[len(HEADS):]: v[ids] for k, v in global_params.items() if k.startswith(HEADS)}

    def client_update(self, local, sent, data, key, state=None):
        hs = HeadSplit(local.task)
        protos, present = sent[MEAN], sent[PRESENT]
        body, head = hs.split({k: v for k, v in sent.items() if k not in (MEAN, PRESENT)})
        x, y, mask = local.full_batch(data)
        h, v = statistics(hs.features(body, x, None), y, local.task._counted(y, mask), protos.shape[0])
        head, head_loss = local.train(head, data, key, self.epochs(local, self.head_epochs),
                                      loss=_with_fixed(local.task.loss, body))
        aligned = aligned_loss(local, self.lam, protos, present)
        new, loss = local.train(body, data, rng.fold(key, 0xB0D7), self.epochs(local, self.body_epochs),
                                loss=_with_fixed(aligned, head))
        sums, counts = class_sums(hs.features(new, x, None), y, local.task._counted(y, mask), protos.shape[0])
        extra = {"head": head, "prototypes": sums / counts.clamp(min=1).unsqueeze(-1), "counts": counts, "h": h, "v": v}
        return ClientUpdate(model_delta(body, new), examples_weight(data), {"loss": loss, "head_loss": head_loss},
                            extra=extra)

    def server_update(self, params, delta, optimizer, server_state, updates):
        check(isinstance(updates.ids, Tensor), "ids", None, "the cohort's client ids (set by the engine)")
        ex = updates.extra
        mean, seen = average_prototypes(ex["prototypes"], ex["counts"], "counts")
        params[MEAN].copy_(torch.where(seen.unsqueeze(-1), mean, params[MEAN]))
        params[COUNT].copy_(torch.where(seen, ex["counts"].sum(0), params[COUNT]))
        C = updates.weight.shape[0]
        alpha = combination_weights(ex["h"], ex["v"]) if self.collaborate else torch.eye(C, device=ex["v"].device)
        for k, heads in ex["head"].items():
            params[HEADS + k][updates.ids] = torch.einsum("ij,j...->i...", alpha.to(heads), heads)
        return super().server_update(params, delta, optimizer, server_state, updates)  # θ: the weighted mean

    # a training client's own head over the shared body; personalization trains the head alone (as FedRep)
    personal_model = FedRep.personal_model
    adapt = FedRep.adapt
