"""FedProto (Tan, Long, Liu, Zhou, Lu, Jiang, Zhang 2022, "FedProto: Federated
prototype learning across heterogeneous clients", AAAI), Algorithm 1.

Clients exchange class prototypes, never model parameters. Client i keeps its
whole model (per-client state, the model's initialization at the start,
checkpointed): encoder f_i (features z) and head (the model's `head`, the layer
after the features). Each round the server sends the global prototypes C̄^(j)
(and which classes have one); client i trains E epochs on

    L_i = CE(h_i(f_i(x)), y) + λ · mean_x ‖f_i(x) - C̄^(y)‖² / d      (Eq. (8)),

the regularizer counting only classes with a global prototype (a mean over the
minibatch and the d feature dimensions), then sends its local prototypes (Eq. (4))

    C_i^(j) = (1 / |D_i,j|) Σ_{(x, y) ∈ D_i,j} f_i(x)     (the trained encoder, all its examples)

with the counts |D_i,j|. The server averages per class (Eq. (6)) over the
clients that hold the class, weighted by |D_i,j| (`weighting=counts`; the
paper's weights, normalized), or uniformly (`weighting=clients`: the authors'
code). A class no client of the round holds keeps its previous prototype.

λ = 0 is local training alone (the prototypes are computed and sent but never
used). Defaults: λ = 1 and E = 1 (the authors' code; the paper's λ varies per
experiment). Bytes: down the K×d prototypes (float32) and K presence flags
(bool); up K×d prototypes and K counts (float32). The server's model is the
initialization, never trained. Personalization: a training client starts from
its own model; a held-out client from the initialization; both train locally
on L_i with the current global prototypes. Predictions are the model's own
(the paper's prototype-distance inference is not implemented).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pfl.algorithms.base import Algorithm, ClientUpdate, LocalEpochs, examples_weight
from pfl.algorithms.head_split import HeadSplit, linear_head_weight
from pfl.config.settings import number, one_of, setting

MEAN, COUNT, PRESENT = "prototypes.mean", "prototypes.count", "prototypes.present"


def class_sums(z: Tensor, y: Tensor, counted: Tensor, classes: int) -> tuple[Tensor, Tensor]:
    """(Σ z per class [K, d], count per class [K]) over the counted positions."""
    onehot = torch.nn.functional.one_hot(y.reshape(-1).clamp(min=0), classes).to(z.dtype)
    onehot = onehot * counted.reshape(-1, 1).to(z.dtype)
    return onehot.T @ z.reshape(-1, z.shape[-1]), onehot.sum(0)


def average_prototypes(protos: Tensor, counts: Tensor, weighting: str) -> tuple[Tensor, Tensor]:
    """Eq. (6): (C̄ [K, d], which classes any client holds [K]) from the cohort's [C, K, d] and [C, K]."""
    w = counts if weighting == "counts" else (counts > 0).to(counts.dtype)
    total = w.sum(0)
    mean = torch.einsum("ck,ckd->kd", w, protos) / total.clamp(min=1e-12).unsqueeze(-1)
    return mean, total > 0


def aligned_loss(local, lam: float, protos: Tensor, present: Tensor):
    """Eq. (8): the task loss plus λ · the squared distance of each feature to its class's prototype
    (classes with a prototype only; a mean over the counted positions and the d feature dimensions)."""
    hs = HeadSplit(local.task)

    def fn(params, x, y, mask, key):
        z = hs.features(params, x, key)
        value = local.task.loss_from_logits(hs.logits(hs.split(params)[1], z), y, mask)
        counted = local.task._counted(y, mask).reshape(-1)
        yf = y.reshape(-1).clamp(min=0)
        dist = ((z.reshape(-1, z.shape[-1]) - protos[yf]) ** 2).mean(-1) * (counted & present[yf])
        return value + lam * dist.sum() / counted.sum().clamp(min=1)

    return fn


@dataclass
class FedProto(LocalEpochs, Algorithm):
    lam: float = setting(1.0, number(ge=0))  # λ: weight of the prototype regularizer
    weighting: str = setting("counts", one_of("counts", "clients"))  # Eq. (6): by |D_i,j| or uniform over clients

    def init_global(self, model_params):
        w = linear_head_weight(model_params)
        return {**model_params, MEAN: torch.zeros_like(w), COUNT: torch.zeros_like(w[:, 0])}

    def model_params(self, global_params):
        return {k: v for k, v in global_params.items() if not k.startswith("prototypes.")}

    def init_client_state(self, global_params):
        return {k: v.detach().clone() for k, v in self.model_params(global_params).items()}

    def broadcast(self, global_params, key, server_state):
        return {MEAN: global_params[MEAN], PRESENT: global_params[COUNT] > 0}

    def loss(self, local, protos: Tensor, present: Tensor):
        return aligned_loss(local, self.lam, protos, present)

    def client_update(self, local, sent, data, key, state=None):
        steps = self.steps(local)
        new, value = local.train(state, data, key, steps, loss=self.loss(local, sent[MEAN], sent[PRESENT]))
        hs = HeadSplit(local.task)
        x, y, mask = local.full_batch(data)
        z = hs.features(new, x, None)
        sums, counts = class_sums(z, y, local.task._counted(y, mask), sent[MEAN].shape[0])
        protos = sums / counts.clamp(min=1).unsqueeze(-1)
        return ClientUpdate({}, examples_weight(data), {"loss": value}, new, {"prototypes": protos, "counts": counts})

    def aggregate(self, updates, server_state):
        return {}  # no parameter update: the prototypes are averaged in server_update

    def server_update(self, params, delta, optimizer, server_state, updates):
        mean, seen = average_prototypes(updates.extra["prototypes"], updates.extra["counts"], self.weighting)
        total = updates.extra["counts"].sum(0)
        params[MEAN].copy_(torch.where(seen.unsqueeze(-1), mean, params[MEAN]))
        params[COUNT].copy_(torch.where(seen, total, params[COUNT]))
        return super().server_update(params, {}, optimizer, server_state, updates)  # steps nothing (no Δ)

    def personal_model(self, params, state=None):
        return self.model_params(params) if state is None else dict(state)

    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        local.train_by_epoch(self.personal_model(params, state), data, key, epochs, on_epoch,
                             loss=self.loss(local, params[MEAN], params[COUNT] > 0))

