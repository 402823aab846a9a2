"""Per-FedAvg (Fallah, Mokhtari, Ozdaglar 2020): FedAvg on the MAML objective
F(θ) = L(θ - α∇L(θ)).

Each of `local_steps` local steps draws independent minibatches D, D', D'':

    θ'  = θ - α ∇L_D(θ)
    g   = ∇L_D'(θ')                                   (variant fo)
    g   = (I - α ∇²L_D''(θ)) ∇L_D'(θ')                (variant hf: the exact
          Hessian-vector product ∇²L_D''(θ)·∇L_D'(θ'), by forward-over-reverse
          differentiation, torch.func.jvp of torch.func.grad)
    θ   = client_opt step with g                       (β = client_opt.lr)

and the client returns Δ = θ_start - θ_end (parameter units, server SGD lr 1
averages the models), clients weighted equally.

`support_fraction` P (the AFML paper's "Per-FedAvg P=80%"): D and D'' come
from the support part (fraction P of the client's examples, redrawn every
round) and D' from the query part; null: all three from all the examples.
Personalization: epochs of minibatch SGD with lr α (the step the meta-model
is trained to take), batch size of the client optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch.func import grad, jvp

from pfl import rng
from pfl.algorithms.base import Algorithm, ClientUpdate, model_delta, uniform_weight
from pfl.algorithms.meta import sgd, split_support_query
from pfl.config.settings import integer, number, one_of, optional, setting
from pfl.optim import ClientSGD
from pfl.task import Params

VARIANTS = ("fo", "hf")


def hessian_vector_product(loss, params: Params, vector: Params, *args) -> Params:
    """∇²loss(params)·vector, exactly (jvp of the gradient)."""
    return jvp(lambda p: grad(loss)(p, *args), (params,), (vector,))[1]


@dataclass
class PerFedAvg(Algorithm):
    variant: str = setting("fo", one_of(*VARIANTS))  # hf: exact Hessian-vector products
    inner_lr: float = setting(0.05, number(gt=0))  # α
    local_steps: int = setting(5, integer(ge=1))  # τ
    support_fraction: Optional[float] = setting(0.8, optional(number(gt=0, lt=1)))  # P (the AFML paper's 80%; null: no split)

    def meta_grad(self, local, theta: Params, batches, key):
        """(g, loss of the outer batch) for one local step."""
        task = local.task
        g_in = local.grad(theta, batches[0], rng.fold(key, 1))[0]
        g, loss = local.grad(sgd(theta, g_in, self.inner_lr), batches[1], rng.fold(key, 2))
        if self.variant == "hf":
            x, y, mask = batches[2]
            hv = hessian_vector_product(task.loss, theta, g, x, y, mask, rng.fold(key, 3))
            g = {k: g[k] - self.inner_lr * hv[k] for k in g}
        return g, loss

    def client_update(self, local, params, data, key, state=None):
        if self.support_fraction is None:
            support = query = data
        else:
            support, query = split_support_query(data, rng.fold(key, 1), self.support_fraction)

        def step(carry, s):
            step_t = torch.as_tensor(s, device=data.x.device)
            batches = [local.batch(support, rng.fold(key, 11), step_t), local.batch(query, rng.fold(key, 12), step_t)]
            if self.variant == "hf":
                batches.append(local.batch(support, rng.fold(key, 13), step_t))
            g, loss = self.meta_grad(local, carry["params"], batches, rng.fold(rng.fold(key, 14), s))
            new, opt_state = local.opt.update(carry["params"], g, carry["opt"])
            return {"params": new, "opt": opt_state, "loss": carry["loss"] + loss.detach()}

        carry = {"params": params, "opt": local.opt.init(params), "loss": torch.zeros((), device=data.x.device)}
        carry = local.steps_loop(data)(carry, step, self.local_steps)
        return ClientUpdate(model_delta(params, carry["params"]), uniform_weight(data),
                            {"loss": carry["loss"] / self.local_steps})

    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        sgd_alpha = local.with_opt(ClientSGD(lr=self.inner_lr, batch_size=local.batch_size))
        sgd_alpha.train_by_epoch(self.model_params(params), data, key, epochs, on_epoch)
