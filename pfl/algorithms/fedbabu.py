"""FedBABU (Oh, Kim, Yun 2022, "FedBABU: Toward enhanced representation for
federated image classification", ICLR), Algorithm 1.

Federated training updates and aggregates only the body: the head
(the model's `head`) is randomly initialized and never updated. Each round a
client trains the body for E epochs of the client optimizer with the head
frozen at its initial value and sends the body, Δ = body^t - body_k
(weighted by example count, FedAvg's average). The head is fine-tuned at
personalization (evaluation).

Bytes: the body both ways. The head is fixed from initialization, which
every client derives from the shared seed, so it is never sent (the engine's
broadcast carries it to the client function; `bytes_exchanged` leaves it out).

Personalization (training and held-out clients alike; FedBABU keeps no
per-client state): `finetune: head` (default) fine-tunes the head for k
epochs on the global body, as the paper's abstract states ("the head is
fine-tuned for personalization during the evaluation process"); `finetune:
all` fine-tunes body and head together, which some re-implementations use.
The paper's experimental section was not available here to settle which
of the two its tables use.
"""

from __future__ import annotations

from dataclasses import dataclass

from pfl.algorithms.base import Algorithm, ClientUpdate, LocalEpochs, examples_weight, model_delta, nbytes
from pfl.algorithms.fedrep import _with_fixed
from pfl.algorithms.head_split import check_head, split_by_prefix
from pfl.config.settings import one_of, setting


@dataclass
class FedBABU(LocalEpochs, Algorithm):  # E: epochs of body updates per round
    finetune: str = setting("head", one_of("head", "all"))  # personalization: head | all

    def client_update(self, local, sent, data, key, state=None):
        check_head(local.task)
        body, head = split_by_prefix(sent)
        steps = self.steps(local)
        new, loss = local.train(body, data, key, steps, loss=_with_fixed(local.task.loss, head))
        return ClientUpdate(model_delta(body, new), examples_weight(data), {"loss": loss})

    def bytes_exchanged(self, sent, updates):
        down = nbytes(split_by_prefix(sent)[0])  # the frozen head is known from initialization
        return down, super().bytes_exchanged(sent, updates)[1]

    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        model = self.model_params(params)
        if self.finetune == "all":
            local.train_by_epoch(model, data, key, epochs, on_epoch)
            return
        body, head = split_by_prefix(model)
        local.train_by_epoch(head, data, key, epochs, lambda e, h: on_epoch(e, {**body, **h}),
                             loss=_with_fixed(local.task.loss, body))
