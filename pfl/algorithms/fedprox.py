"""FedProx (Li, Sahu, Zaheer, Sanjabi, Talwalkar, Smith 2020, "Federated
optimization in heterogeneous networks", MLSys).

Each selected client approximately minimizes the proximal local objective of
the paper's Eq. (2),

    h_k(w; w^t) = F_k(w) + (μ/2)·‖w - w^t‖²,

here with E epochs of the client optimizer from w^t (the anchor w^t is what
the server broadcast); the server averages the local models as FedAvg does
(Δ = w^t - w_k, weighted by example count, server SGD lr 1 = the average).
μ = 0 is FedAvg(E) exactly. The metric `loss` is the local objective h_k.
Personalization: the default (local epochs of the whole global model).
"""

from __future__ import annotations

from dataclasses import dataclass

from pfl.algorithms.base import ClientUpdate, examples_weight, model_delta
from pfl.algorithms.fedavg import FedAvg
from pfl.config.settings import number, setting


def proximal(task_loss, anchor, mu: float):
    """task_loss(w) + (mu/2)·‖w - anchor‖² (a loss of local.train)."""
    def loss(params, x, y, mask, key):
        prox = sum(((params[n] - anchor[n]) ** 2).sum() for n in params)
        return task_loss(params, x, y, mask, key) + 0.5 * mu * prox
    return loss


@dataclass
class FedProx(FedAvg):
    mu: float = setting(0.01, number(ge=0))  # μ: weight of the proximal term

    def client_update(self, local, params, data, key, state=None):
        new, loss = local.train(params, data, key, self.steps(local), loss=proximal(local.task.loss, params, self.mu))
        return ClientUpdate(model_delta(params, new), examples_weight(data), {"loss": loss})
