"""Training with one part of the model shared and the other kept by each client.

FedPer keeps the head on the client and shares the body; LG-FedAvg keeps the
body and shares the head. Both are FedAvg's local training on the client's
whole model (its own part + the received shared part) with only the shared
part's Δ sent back; the subclasses say which part is personal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pfl.algorithms.base import Algorithm, ClientUpdate, LocalEpochs, examples_weight, model_delta
from pfl.algorithms.head_split import check_head, split_by_prefix
from pfl.task import Params


@dataclass
class SplitSharing(LocalEpochs, Algorithm):
    personal: ClassVar[str] = "head"  # "head" (FedPer) or "body" (LG-FedAvg): the part a client keeps

    def _parts(self, params: Params) -> tuple[Params, Params]:
        """(shared, personal) parts of `params`."""
        body, head = split_by_prefix(params)
        return (body, head) if self.personal == "head" else (head, body)

    def init_client_state(self, global_params):
        return {k: v.detach().clone() for k, v in self._parts(global_params)[1].items()}

    def broadcast(self, global_params, key, server_state):
        return self._parts(global_params)[0]

    def client_update(self, local, sent, data, key, state=None):
        check_head(local.task)
        steps = self.steps(local)
        new, loss = local.train({**sent, **state}, data, key, steps)
        shared, personal = self._parts(new)
        return ClientUpdate(model_delta(sent, shared), examples_weight(data), {"loss": loss}, personal)

    def personal_model(self, params, state=None):
        model = self.model_params(params)
        return model if state is None else {**model, **state}

    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        local.train_by_epoch(self.personal_model(params, state), data, key, epochs, on_epoch)
