"""LG-FedAvg (Liang, Liu, Ziyin, Allen, Auerbach, Brent, Salakhutdinov,
Morency 2020, "Think locally, act globally: Federated learning with local and
global representations", arXiv:2001.01523), Algorithm 1.

The opposite split of FedPer: each client keeps a local representation (the
body, per-client state: the model's initial body at the start, checkpointed)
and the head (`algorithm.head`) is global. Each round the server sends the
head; a client trains its own body and the head jointly for E epochs of the
client optimizer and sends back only the head, Δ = head^t - head_k (weighted
by example count, averaged as in FedAvg). The server's body is never updated.

Bytes: the head both ways. Personalization: a training client is its own
body with the global head (k = 0 evaluates that) and continues the same local
training for k epochs; a held-out client has no local representation and
starts from the model's initial body (the server's, never trained) with the
global head, then trains both — a new device learning its local
representation. (The paper also evaluates new devices with an ensemble of
the training clients' local models; that is not implemented here.)
"""

from __future__ import annotations

from dataclasses import dataclass

from pfl.algorithms.base import Algorithm, ClientUpdate, examples_weight, model_delta
from pfl.algorithms.head_split import check_head, split_by_prefix
from pfl.settings import integer, setting, text


@dataclass
class LGFedAvg(Algorithm):
    local_epochs: int = setting(1, integer(ge=1))  # E
    head: str = setting("head", text("head"))  # prefix of the global layers (emnist_cnn/small_cnn: fc2)

    def init_client_state(self, global_params):
        return {k: v.detach().clone() for k, v in split_by_prefix(global_params, self.head)[0].items()}

    def broadcast(self, global_params, key, server_state):
        return split_by_prefix(global_params, self.head)[1]  # the global head only

    def client_update(self, local, sent, data, key, state=None):
        check_head(local.task, self.head)
        steps = lambda n: self.local_epochs * local.batches_per_epoch(n)  # noqa: E731
        new, loss = local.train({**state, **sent}, data, key, steps)
        body, head = split_by_prefix(new, self.head)
        return ClientUpdate(model_delta(sent, head), examples_weight(data), {"loss": loss}, body)

    def personal_model(self, params, state=None):
        model = self.model_params(params)
        return model if state is None else {**model, **state}

    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        local.train_by_epoch(self.personal_model(params, state), data, key, epochs, on_epoch)
