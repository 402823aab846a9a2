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
from pfl.settings import integer, number, setting


@dataclass
class Centralized(Algorithm):
    epochs: int = setting(10, integer(ge=1))  # one logged "round" = one epoch
    lr: float = setting(0.001, number(gt=0))  # Adam on the pooled data
    batch_size: int = setting(20, integer(ge=1))
    beta1: float = setting(0.9, number(ge=0, lt=1))
    beta2: float = setting(0.999, number(ge=0, lt=1))
    eps: float = setting(1e-8, number(gt=0))
    weight_decay: float = setting(0.0, number(ge=0))
    #: trained on the union of the training clients' examples, not per client
    pooled = True

    def make_optimizer(self, param_groups) -> torch.optim.Optimizer:
        return torch.optim.Adam(param_groups, lr=self.lr, betas=(self.beta1, self.beta2), eps=self.eps,
                                weight_decay=self.weight_decay)

    def num_steps(self, local, n):
        raise NotImplementedError("Centralized trains on pooled data (pfl.engine.centralized), not per client")

    def client_update(self, local, params, data, key, max_steps, state=None):
        raise NotImplementedError("Centralized trains on pooled data (pfl.engine.centralized), not per client")
