"""FedMeta (Chen et al. 2018, "Federated meta-learning with fast convergence
and efficient communication"): the server holds a meta-learner, every client
is a task with a support and a query set.

    S, Q = the client's examples split into support (fraction P) and query
    φ    = θ - α ⊙ ∇L_S(θ)        (inner_steps steps)
    g    = ∇_(θ, α) L_Q(φ)        returned as Δ; server: θ -= β · mean(g)

- `variant=maml`: α is the fixed `inner_lr`; g is exact second-order MAML
  (`first_order=true`: FOMAML, the inner gradients treated as constants).
- `variant=metasgd`: α is a learned per-parameter learning rate (Li et al.
  2017), part of the server state (names `inner_lr.<param>`, initialized to
  `inner_lr`), sent to and updated by clients like θ; personalization uses it.

Δ is the meta-gradient, so the server learning rate β is `outer_lr`, set on
the server optimizer's parameter group (server_opt picks the optimizer:
sgd, or adam as in FedMeta's experiments). Clients are weighted equally (the
mean over tasks of MAML). The support/query split is redrawn every round.
Personalization (Pers.k, the budget every method gets): k epochs over the
client's training data in minibatches of the personalization client
optimizer's batch size, each minibatch one step of the inner update
θ ← θ - α ⊙ ∇L (α: `inner_lr`, or Meta-SGD's learned rates). Before, an
"epoch" here was `inner_steps` full-batch steps, a different budget from the
minibatch epochs of FedAvg-FT and APFL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch.func import grad

from pfl import rng
from pfl.algorithms.base import Algorithm, ClientUpdate, uniform_weight
from pfl.algorithms.meta import sample_batch, sgd, split_support_query
from pfl.config.settings import boolean, integer, number, one_of, optional, setting
from pfl.task import Params

LR = "inner_lr."
VARIANTS = ("maml", "metasgd")


@dataclass
class FedMeta(Algorithm):
    variant: str = setting("maml", one_of(*VARIANTS))  # metasgd: learned per-parameter inner lrs (server state)
    support_fraction: float = setting(0.8, number(gt=0, lt=1))  # P
    inner_lr: float = setting(0.5, number(gt=0))  # α (Meta-SGD: its initial value)
    inner_steps: int = setting(1, integer(ge=1))
    outer_lr: float = setting(1.0, number(gt=0))  # β, the server learning rate (a parameter group of server_opt)
    first_order: bool = setting(False, boolean())  # true: FOMAML
    batch_size: Optional[int] = setting(None, optional(integer(ge=1)))  # support/query minibatch (null: the whole sets)

    # -- server state ----------------------------------------------------------
    def init_global(self, model_params: Params) -> Params:
        if self.variant == "maml":
            return dict(model_params)
        return {**model_params, **{LR + k: torch.full_like(v, self.inner_lr) for k, v in model_params.items()}}

    def model_params(self, global_params: Params) -> Params:
        return {k: v for k, v in global_params.items() if not k.startswith(LR)}

    def rates(self, global_params: Params):
        """Per-parameter inner learning rates (Meta-SGD) or the fixed α."""
        if self.variant == "maml":
            return self.inner_lr
        return {k[len(LR):]: v for k, v in global_params.items() if k.startswith(LR)}

    def param_groups(self, names: list[str]) -> list[tuple[list[str], dict]]:
        return [(names, {"lr": self.outer_lr})]

    # -- one client --------------------------------------------------------------
    def adapted(self, task, theta: Params, lrs, batch, key) -> Params:
        x, y, mask = batch
        for i in range(self.inner_steps):
            g = grad(task.loss)(theta, x, y, mask, rng.fold(key, i))
            if self.first_order:
                g = {k: v.detach() for k, v in g.items()}
            theta = sgd(theta, g, lrs)
        return theta

    def client_update(self, local, params, data, key, state=None):
        task = local.task
        support, query = split_support_query(data, rng.fold(key, 1), self.support_fraction)
        xs, ys, ms = sample_batch(support, rng.fold(key, 2), self.batch_size)
        xq, yq, mq = sample_batch(query, rng.fold(key, 3), self.batch_size)
        xs, xq = local.augment(support, xs, rng.fold(key, 4)), local.augment(query, xq, rng.fold(key, 5))

        def query_loss(theta, lrs):
            phi = self.adapted(task, theta, lrs, (xs, ys, ms), rng.fold(key, 6))
            return task.loss(phi, xq, yq, mq, rng.fold(key, 7))

        theta = self.model_params(params)
        if self.variant == "maml":
            g, loss = torch.func.grad_and_value(query_loss)(theta, self.inner_lr)
            delta = g
        else:
            (g, g_lr), loss = torch.func.grad_and_value(query_loss, argnums=(0, 1))(theta, self.rates(params))
            delta = {**g, **{LR + k: v for k, v in g_lr.items()}}
        return ClientUpdate(delta, uniform_weight(data), {"loss": loss.detach()})

    # -- personalization -----------------------------------------------------------
    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        step = _InnerStep(self.rates(params), local.batch_size)
        local.with_opt(step).train_by_epoch(self.model_params(params), data, key, epochs, on_epoch)


@dataclass
class _InnerStep:
    """The inner update θ - α ⊙ g as a client optimizer (α a number or per-parameter rates)."""

    rates: object
    batch_size: int

    def init(self, params: Params) -> dict:
        return {}

    def update(self, params: Params, grads: Params, state: dict):
        return sgd(params, grads, self.rates), state
