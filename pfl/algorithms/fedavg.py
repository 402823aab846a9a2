"""FedSGD, FedAvg(E) and Reptile(K): the model-averaging family.

Δ = θ - θ_local after local client-optimizer steps:
- FedSGD: one step on the client's full data (or, with full_batch=false, on
  the first minibatch of the client's sequence, as FOMAML(0)), weighted by
  example count;
- FedAvg(E): E epochs of minibatch steps, weighted by example count
  (McMahan et al. 2017);
- Reptile(K): K minibatch steps, every client weighted equally (Nichol et al.
  2018, read as FedAvg by Jiang et al. 2019).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pfl import rng
from pfl.algorithms.base import Algorithm, ClientUpdate, LocalEpochs, examples_weight, model_delta, uniform_weight
from pfl.config.settings import boolean, integer, setting


@dataclass
class FedSGD(Algorithm):
    full_batch: bool = setting(True, boolean())  # False: one step on the minibatch of local step 0 (FOMAML(0))

    def client_update(self, local, params, data, key, state=None):
        if self.full_batch:
            g, loss = local.grad(params, local.full_batch(data), key)
        else:  # the same batch and dropout key as the first step of FedAvg / Reptile
            step = torch.zeros((), dtype=torch.int64, device=data.x.device)
            g, loss = local.grad(params, local.batch(data, key, step), rng.fold(key, 1000))
        new, _ = local.opt.update(params, g, local.opt.init(params))
        return ClientUpdate(model_delta(params, new), examples_weight(data), {"loss": loss.detach()})


@dataclass
class FedAvg(LocalEpochs, Algorithm):  # E epochs: a step count per client, from its number of examples
    def client_update(self, local, params, data, key, state=None):
        new, loss = local.train(params, data, key, self.steps(local))
        return ClientUpdate(model_delta(params, new), examples_weight(data), {"loss": loss})


@dataclass
class Reptile(Algorithm):
    local_steps: int = setting(5, integer(ge=1))  # K

    def client_update(self, local, params, data, key, state=None):
        new, loss = local.train(params, data, key, self.local_steps)
        return ClientUpdate(model_delta(params, new), uniform_weight(data), {"loss": loss})
