"""FedPer (Arivazhagan, Aggarwal, Singh, Choudhary 2019, "Federated learning
with personalization layers", arXiv:1912.00818), Sec. 3 / Algorithm 1.

The model is base layers (the body, shared) and personalization layers (the
head, `algorithm.head`, kept on the client). Each round the server sends the
body; a client trains body and its own head jointly for E epochs of the client
optimizer (FedAvg's local training) and sends back only the body,
Δ = body^t - body_k (weighted by example count); the head stays on the client
(per-client state, the model's initial head at the start, checkpointed). The
server's head is never updated (no Δ is sent for it).

Bytes: the body both ways. Personalization: a training client is the global
body with its own head (k = 0 evaluates that) and continues FedPer's local
training of body and head for k epochs; a held-out client has no head of its
own and starts from the global body with the model's initial head (the
server's, never trained) — what a newly joining FedPer client holds — then
trains body and head the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from pfl.algorithms.base import Algorithm, ClientUpdate, examples_weight, model_delta
from pfl.algorithms.head_split import check_head, split_by_prefix
from pfl.settings import integer, setting, text


@dataclass
class FedPer(Algorithm):
    local_epochs: int = setting(1, integer(ge=1))  # E
    head: str = setting("head", text("head"))  # prefix of the personal layers (emnist_cnn/small_cnn: fc2)

    def init_client_state(self, global_params):
        return {k: v.detach().clone() for k, v in split_by_prefix(global_params, self.head)[1].items()}

    def broadcast(self, global_params, key, server_state):
        return split_by_prefix(global_params, self.head)[0]  # the body only

    def client_update(self, local, sent, data, key, state=None):
        check_head(local.task, self.head)
        steps = lambda n: self.local_epochs * local.batches_per_epoch(n)  # noqa: E731
        new, loss = local.train({**sent, **state}, data, key, steps)
        body, head = split_by_prefix(new, self.head)
        return ClientUpdate(model_delta(sent, body), examples_weight(data), {"loss": loss}, head)

    def personal_model(self, params, state=None):
        model = self.model_params(params)
        return model if state is None else {**model, **state}

    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        local.train_by_epoch(self.personal_model(params, state), data, key, epochs, on_epoch)
