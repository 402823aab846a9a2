"""The centralized ("datacenter") baseline of Jiang et al. 2019, Sec. 4.

Not a federated algorithm: the training clients' data are pooled and the model
is trained with Adam on shuffled minibatches of the pool for a number of
epochs. The engine runs it with `pfl.engine.centralized.CentralizedModule`
(selected because `pooled` is True; one "round" there is one epoch), and the
model is then personalized and evaluated exactly like a federated one, with
the default `adapt` (local training with the personalization client optimizer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pfl.algorithms.base import Algorithm
from pfl.config_errors import check, is_int, is_number


@dataclass
class Centralized(Algorithm):
    epochs: int = 10
    lr: float = 0.001  # Adam on the pooled data
    batch_size: int = 20
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    name: str = "centralized"
    #: trained on the union of the training clients' examples, not per client
    pooled = True

    def __post_init__(self):
        check(is_int(self.epochs) and self.epochs >= 1, "algorithm.epochs", self.epochs, "an integer >= 1")
        check(is_number(self.lr) and self.lr > 0, "algorithm.lr", self.lr, "a number > 0")
        check(is_int(self.batch_size) and self.batch_size >= 1, "algorithm.batch_size", self.batch_size, "an integer >= 1")
        check(is_number(self.beta1) and is_number(self.beta2) and 0 <= self.beta1 < 1 and 0 <= self.beta2 < 1,
              "algorithm.beta1/beta2", (self.beta1, self.beta2), "numbers in [0, 1)")
        check(is_number(self.weight_decay) and self.weight_decay >= 0, "algorithm.weight_decay", self.weight_decay,
              "a number >= 0")

    def make_optimizer(self, param_groups) -> torch.optim.Optimizer:
        return torch.optim.Adam(param_groups, lr=self.lr, betas=(self.beta1, self.beta2), eps=self.eps,
                                weight_decay=self.weight_decay)

    def num_steps(self, local, n):
        raise NotImplementedError("Centralized trains on pooled data (pfl.engine.centralized), not per client")

    def client_update(self, local, params, data, key, max_steps, state=None):
        raise NotImplementedError("Centralized trains on pooled data (pfl.engine.centralized), not per client")
