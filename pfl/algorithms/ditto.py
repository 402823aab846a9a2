"""Ditto (Li, Hu, Beirami, Smith 2021, "Ditto: Fair and robust federated
learning through personalization", ICML), Algorithm 1.

Two models per client. The global model w is trained by FedAvg: from the
broadcast w^t, E epochs of the client optimizer on F_k; the server averages
(Δ = w^t - w_k, weighted by example count). The personal model v_k, kept on
the client across rounds (per-client state, v_k = w^0 at the start,
checkpointed), solves the paper's Eq. (2)

    min_v  h_k(v; w) = F_k(v) + (λ/2)·‖v - w‖²

by `personal_epochs` epochs of the client optimizer on h_k with w = w^t each
round: v ← v - η(∇F_k(v) + λ(v - w^t)). λ = 0 is local training of v alone;
with plain SGD and λ = 1/η a step lands at w^t - η∇F_k(v), and larger λη (< 2)
pins v ever closer to w^t.

Only w travels (bytes as FedAvg). Personalization: a training client starts
from its own v_k (k = 0 evaluates v_k) and continues the personal updates
toward the current global model for k epochs; a held-out client, which has no
v, starts v at the current global model and takes the same updates (Ditto's
personal solver run from w).
"""

from __future__ import annotations

from dataclasses import dataclass

from pfl import rng
from pfl.algorithms.base import Algorithm, ClientUpdate, LocalEpochs, examples_weight, model_delta
from pfl.algorithms.fedprox import proximal
from pfl.config.settings import integer, number, setting


@dataclass
class Ditto(LocalEpochs, Algorithm):  # E: epochs of the global model's local training (FedAvg)
    personal_epochs: int = setting(1, integer(ge=1))  # epochs of the personal model's proximal updates per round
    lam: float = setting(0.1, number(ge=0))  # λ: pull of the personal model toward the global one

    def init_client_state(self, global_params):
        return {k: v.detach().clone() for k, v in global_params.items()}  # v_k = w^0

    def client_update(self, local, sent, data, key, state=None):
        w, loss = local.train(sent, data, key, self.steps(local))
        v, personal = local.train(state, data, rng.fold(key, 0xD1770), local.epochs(self.personal_epochs),
                                  loss=proximal(local.task.loss, sent, self.lam))
        return ClientUpdate(model_delta(sent, w), examples_weight(data), {"loss": loss, "personal_loss": personal}, v)

    def personal_model(self, params, state=None):
        return self.model_params(params) if state is None else dict(state)

    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        w = self.model_params(params)
        local.train_by_epoch(self.personal_model(params, state), data, key, epochs, on_epoch,
                             loss=proximal(local.task.loss, w, self.lam))
