"""FOMAML(K) and MAML(K): the meta-gradient family (Jiang et al. 2019, Sec. 2).

Both take K client-optimizer steps on the minibatches of steps 0..K-1
(`LocalTrainer.batch`, the same sequence FedAvg and Reptile use) and then look
at the minibatch of step K:

- FOMAML(K): the gradient of the loss at the reached point θ_K;
- MAML(K): the exact meta-gradient d L_K(θ_K(θ)) / dθ, differentiated through
  the K unrolled inner steps (second order, `torch.func.grad` of a function
  that itself calls `grad`; it runs under the cohort's vmap like any update).

The update sent to the server is that gradient put in parameter units the way
FedSGD does it: one client-optimizer step from a fresh optimizer state,
Δ = θ - step(θ, g). With plain SGD, Δ = lr · g. Hence FOMAML(0) = MAML(0) =
FedSGD on the first minibatch, and, with equal weights and plain SGD, the
paper's equation (5) holds exactly on one cohort:

    Δ FedAvg(K steps) = Δ FedSGD + Σ_{j=1}^{K-1} Δ FOMAML(j)

Clients are weighted equally (meta-learning treats every client as one task).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import grad_and_value

from pfl import rng
from pfl.algorithms.base import Algorithm, ClientUpdate, model_delta, uniform_weight
from pfl.config.settings import integer, setting


def gradient_step_delta(local, params, grads):
    """Δ = θ - (one client-optimizer step from a fresh state): lr · g for SGD."""
    new, _ = local.opt.update(params, grads, local.opt.init(params))
    return model_delta(params, new)


def query_batch(local, data, key, k: int):
    """The minibatch and dropout key of local step k (the one after K inner steps)."""
    step = torch.as_tensor(k, device=data.x.device)
    return local.batch(data, key, step), rng.fold(key, 1000 + k)


@dataclass
class _MetaAlgorithm(Algorithm):
    local_steps: int = setting(1, integer(ge=0, note="0: FedSGD on one minibatch"))  # K


@dataclass
class FOMAML(_MetaAlgorithm):
    local_steps: int = setting(5, integer(ge=0, note="0: FedSGD on one minibatch"))  # K

    def client_update(self, local, params, data, key, state=None):
        k = self.local_steps
        reached, inner = local.train(params, data, key, k)
        batch, dkey = query_batch(local, data, key, k)
        g, outer = local.grad(reached, batch, dkey)
        metrics = {"loss": outer.detach(), "inner_loss": inner}
        return ClientUpdate(gradient_step_delta(local, params, g), uniform_weight(data), metrics)


@dataclass
class MAML(_MetaAlgorithm):

    def client_update(self, local, params, data, key, state=None):
        k = self.local_steps
        batch, dkey = query_batch(local, data, key, k)

        def meta_loss(p):  # the K inner steps unrolled on the backend's loop, differentiated through
            adapted, inner = local.train(p, data, key, k)
            x, y, mask = batch
            return local.task.loss(adapted, x, y, mask, dkey), inner

        g, (outer, inner) = grad_and_value(meta_loss, has_aux=True)(params)
        metrics = {"loss": outer.detach(), "inner_loss": inner.detach()}
        return ClientUpdate(gradient_step_delta(local, params, g), uniform_weight(data), metrics)
