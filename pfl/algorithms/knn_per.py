"""kNN-Per (Marfoq, Neglia, Vidal, Kameni 2022, "Personalized federated learning
through local memorization", ICML), Sec. 3 / Algorithm 1.

Training is FedAvg(E): one global model, encoder φ and head (the model's `head`).
Personalization takes no gradient step. Client m keeps a memory (datastore)
S_m = {(φ(x_i), y_i)} of its training examples under the global encoder and
predicts with the interpolation of Eq. (4)

    p_m(y|x) = λ · p_kNN(y | φ(x), S_m) + (1 - λ) · softmax(h(φ(x)))_y,

where p_kNN is the kernel-weighted vote of the k nearest stored features
(Eq. (3)), with d the squared Euclidean distance and σ a temperature:

    p_kNN(y|z) ∝ Σ_{(z_i, y_i) ∈ N_k(z)} 1{y_i = y} · exp(-d(z, z_i) / σ).

λ = 0 is the global model; λ = 1 with k = 1 predicts the label of the nearest
training example. The prediction reads the client's training data, so it is
this algorithm's `evaluate` hook (the engine scores every point of the
personalization curve with it); `adapt` takes no step, so the curve is flat:
Pers.k = the initial accuracy for every k. Held-out clients build their memory
the same way (kNN-Per needs nothing of a new client but its data).

Defaults: k = 10 neighbours and the Euclidean feature distance (the paper's setup as we read it);
the paper tunes λ per client on local validation data, here one λ for every
client (`lam`, 0.5: our choice); σ = 1 (the paper fixes no value: our choice).
Bytes: FedAvg's (the memory never leaves the client). Sequence tasks store one
entry per counted position. The search is exact (no approximate index): one client
holds a test-positions × memory-entries distance matrix, which is small for image
clients (FEMNIST: ~50 × ~200) but large for character-level sequence clients
(positions × positions); there lower `engine.eval_chunk_size`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pfl.algorithms.fedavg import FedAvg
from pfl.algorithms.head_split import HeadSplit
from pfl.config.settings import integer, number, setting


def knn_probs(z: Tensor, memory: Tensor, labels: Tensor, valid: Tensor, k: int, sigma: float,
              classes: int) -> Tensor:
    """p_kNN(y|z) [Q, classes] for queries z [Q, d] against memory [M, d] with `labels` [M] and
    `valid` [M] (False: a padding entry, never a neighbour). A client with no valid entry gets zeros."""
    d2 = (z * z).sum(-1, keepdim=True) - 2 * z @ memory.T + (memory * memory).sum(-1)
    d2 = torch.where(valid, d2.clamp(min=0), torch.full_like(d2, float("inf")))
    near, idx = torch.topk(-d2, min(k, memory.shape[0]), dim=-1)  # -distances of the k nearest
    logw = near / sigma
    w = torch.exp(logw - logw.max(-1, keepdim=True).values.clamp(min=-1e30))  # padding (-inf) -> 0
    w = torch.where(torch.isfinite(near), w, torch.zeros_like(w))
    votes = torch.nn.functional.one_hot(labels[idx], classes).to(z.dtype) * w.unsqueeze(-1)
    total = votes.sum(1)
    return total / total.sum(-1, keepdim=True).clamp(min=1e-30)


@dataclass
class KNNPer(FedAvg):
    lam: float = setting(0.5, number(ge=0, le=1))  # λ: weight of the kNN vote in Eq. (4)
    neighbours: int = setting(10, integer(ge=1))  # k
    sigma: float = setting(1.0, number(gt=0))  # σ: temperature of the kernel exp(-d / σ)

    def _flat(self, local, hs: HeadSplit, model, data) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(features [P, d], logits [P, classes], labels [P], counted [P]) over a client's positions."""
        x, y, mask = local.full_batch(data)
        z = hs.features(model, x, None)
        logits = hs.logits(hs.split(model)[1], z)
        counted = local.task._counted(y, mask)
        return (z.reshape(-1, z.shape[-1]), logits.reshape(-1, logits.shape[-1]), y.reshape(-1).clamp(min=0),
                counted.reshape(-1))

    def evaluate(self, local, model, test, train):
        hs = HeadSplit(local.task)
        z, logits, y, counted = self._flat(local, hs, model, test)
        memory, _, labels, valid = self._flat(local, hs, model, train)
        p_global = torch.softmax(logits.float(), -1)
        p_knn = knn_probs(z.float(), memory.float(), labels, valid, self.neighbours, self.sigma, logits.shape[-1])
        has_memory = valid.any()  # no training example: the global model alone
        p = torch.where(has_memory, self.lam * p_knn + (1 - self.lam) * p_global, p_global)
        return ((p.argmax(-1) == y) & counted).sum(), counted.sum()

    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        model = self.personal_model(params, state)  # no local step: the memory is the personalization
        for e in range(1, epochs + 1):
            on_epoch(e, model)
