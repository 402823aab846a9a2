"""Local-only training: every client trains a model from scratch on its own
data, nothing is exchanged (the AFML paper's Acc_local reference, trained
200 epochs at lr 0.005).

As an algorithm (`algorithm=local`), rounds do nothing (Δ empty, 0 bytes;
use `rounds=1`) and the global model stays the model's initialization, so
personalization = `epochs` epochs of SGD(lr) from scratch on each evaluated
client; `summary.json`'s `personalized_accuracy[str(epochs)]` is Acc_local.
The same `adapt` is the per-client reference of
`personalization.local_baseline=true` (pfl.evaluation.fairness).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pfl.algorithms.base import Algorithm, ClientUpdate, uniform_weight
from pfl.config.settings import integer, number, setting
from pfl.optim import ClientSGD


@dataclass
class LocalOnly(Algorithm):
    epochs: int = setting(200, integer(ge=1))  # the AFML paper's local-only reference
    lr: float = setting(0.005, number(gt=0))

    @property
    def report_epochs(self) -> tuple[int, ...]:
        return (self.epochs,)

    def broadcast(self, global_params, key, server_state):
        return {}

    def client_update(self, local, params, data, key, state=None):
        return ClientUpdate({}, uniform_weight(data), {"loss": torch.zeros((), device=data.x.device)})

    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        trainer = local.with_opt(ClientSGD(lr=self.lr, batch_size=local.batch_size))
        trainer.train_by_epoch(self.model_params(params), data, key, epochs, on_epoch)
