"""FedRep (Collins, Hassani, Mokhtari, Shakkottai 2021, "Exploiting shared
representations for personalized federated learning", ICML), Algorithm 1.

The model is a representation φ (the body, shared) and a head h_i
(the model's `head`, per client). Each round the server sends φ^t; client i

1. updates its head for `head_epochs` epochs with φ^t fixed:
   h_i ← h_i - η ∇_h f_i(φ^t, h_i)   (client optimizer),
2. then the body for `body_epochs` epochs with the new h_i fixed:
   φ ← φ - η ∇_φ f_i(φ, h_i),

and sends φ_i; the server averages, Δ = φ^t - φ_i (weighted by example
count; server SGD lr 1 = the average). h_i stays on the client (per-client
state, the model's initial head at the start, checkpointed).

Bytes: the body both ways. Personalization: FedRep's head update with the
global representation fixed, k epochs: a training client starts from its own
head (k = 0 evaluates the global body with it); a held-out client has none and
starts from the model's initial head (the server's, never trained) — learning
only a head on the shared representation is how the paper brings in new
clients.
"""

from __future__ import annotations

from dataclasses import dataclass

from pfl import rng
from pfl.algorithms.base import Algorithm, ClientUpdate, examples_weight, model_delta
from pfl.algorithms.head_split import check_head, split_by_prefix
from pfl.config.settings import integer, setting


def _with_fixed(task_loss, fixed):
    """The task loss of the trained part, the other part held at `fixed`."""
    def loss(part, x, y, mask, key):
        return task_loss({**fixed, **part}, x, y, mask, key)
    return loss


@dataclass
class FedRep(Algorithm):
    head_epochs: int = setting(10, integer(ge=1))  # τ_h: epochs of head updates per round
    body_epochs: int = setting(1, integer(ge=1))  # τ_φ: epochs of representation updates per round

    def epochs(self, local, e):
        return local.epochs(e)

    def init_client_state(self, global_params):
        return {k: v.detach().clone() for k, v in split_by_prefix(global_params)[1].items()}

    def broadcast(self, global_params, key, server_state):
        return split_by_prefix(global_params)[0]  # φ only

    def client_update(self, local, sent, data, key, state=None):
        check_head(local.task)
        head, head_loss = local.train(state, data, key, self.epochs(local, self.head_epochs),
                                      loss=_with_fixed(local.task.loss, sent))
        body, loss = local.train(sent, data, rng.fold(key, 0xB0D7), self.epochs(local, self.body_epochs),
                                 loss=_with_fixed(local.task.loss, head))
        metrics = {"loss": loss, "head_loss": head_loss}
        return ClientUpdate(model_delta(sent, body), examples_weight(data), metrics, head)

    def personal_model(self, params, state=None):
        model = self.model_params(params)
        return model if state is None else {**model, **state}

    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        body, head = split_by_prefix(self.personal_model(params, state))
        local.train_by_epoch(head, data, key, epochs, lambda e, h: on_epoch(e, {**body, **h}),
                             loss=_with_fixed(local.task.loss, body))
