"""Local training on one client: minibatches, the step loop, the client optimizer.

Written once for every algorithm. All functions take one client's padded data
(`ClientData` with `n` real examples) and are pure, so the engine can run them
per client or vmapped over a cohort. Loop bounds (`max_steps`) are Python ints
computed by the engine for the whole cohort; a client with fewer steps treats
the extra ones as no-ops (`torch.where`), which keeps every client's result
identical between the two backends.

Minibatches: epoch e visits the client's examples in the order
`rng.permutation(fold(key, e))`, in batches of `batch_size`; the last batch of
an epoch may be short (masked). Step s belongs to epoch s // batches_per_epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor
from torch.func import grad_and_value

from pfl import rng
from pfl.data.federated import ClientData
from pfl.task import Params, Task

LossFn = Callable[[Params, Tensor, Tensor, Tensor, Tensor], Tensor]


def where_tree(cond: Tensor, new, old):
    """Elementwise choice between two dicts (nested) of tensors."""
    if isinstance(new, dict):
        return {k: where_tree(cond, new[k], old[k]) for k in new}
    return torch.where(cond, new, old)


@dataclass
class LocalTrainer:
    task: Task
    opt: object  # a client optimizer from pfl.optim

    @property
    def batch_size(self) -> int:
        return self.opt.batch_size

    def batches_per_epoch(self, n: Tensor) -> Tensor:
        """ceil(n / batch_size), works on a scalar or a vector of counts."""
        return torch.div(n + self.batch_size - 1, self.batch_size, rounding_mode="floor")

    def batch(self, data: ClientData, key: Tensor, step) -> tuple[Tensor, Tensor, Tensor]:
        """The minibatch (x, y, mask) that local step `step` uses."""
        size = data.x.shape[0]
        nb = self.batches_per_epoch(data.n).clamp(min=1)
        epoch = torch.div(step, nb, rounding_mode="floor")
        first = (step - epoch * nb) * self.batch_size
        order = rng.permutation(rng.fold(key, epoch), data.n, size)
        width = min(self.batch_size, size)
        pos = first + torch.arange(width, device=data.x.device)
        idx = order[pos.clamp(max=size - 1)]
        mask = pos < data.n
        return self.augment(data, data.x[idx], rng.fold(rng.fold(key, 0xA06), step)), data.y[idx], mask

    def augment(self, data: ClientData, x: Tensor, key: Tensor) -> Tensor:
        """x augmented by the task's augmentation where the client's `aug` flag
        is set (ζ-permuted image clients); x itself otherwise. Computed for every
        client and chosen by torch.where, so it stays legal under vmap."""
        if data.aug is None or self.task.augment is None:
            return x
        return torch.where(data.aug, self.task.augment(x, key), x)

    def full_batch(self, data: ClientData) -> tuple[Tensor, Tensor, Tensor]:
        mask = torch.arange(data.x.shape[0], device=data.x.device) < data.n
        return data.x, data.y, mask

    def grad(self, params: Params, batch, key: Tensor, loss: LossFn | None = None) -> tuple[Params, Tensor]:
        x, y, mask = batch
        return grad_and_value(loss or self.task.loss)(params, x, y, mask, key)

    def train(
        self,
        params: Params,
        data: ClientData,
        key: Tensor,
        num_steps: Tensor,
        max_steps: int,
        loss: LossFn | None = None,
        first_step: int = 0,
    ) -> tuple[Params, Tensor]:
        """Run `num_steps` client-optimizer steps; returns (params, mean loss).

        `loss` (default: the task's cross-entropy) lets an algorithm train a
        subset of parameters or add a regularizer.
        """
        state = self.opt.init(params)
        total = torch.zeros((), device=data.x.device)
        for s in range(first_step, first_step + max_steps):
            step = torch.as_tensor(s, device=data.x.device)
            k = rng.fold(key, 1000 + s)
            g, value = self.grad(params, self.batch(data, key, step), k, loss)
            new, new_state = self.opt.update(params, g, state)
            active = step - first_step < num_steps
            params = where_tree(active, new, params)
            state = where_tree(active, new_state, state)
            total = total + torch.where(active, value.detach(), torch.zeros_like(value))
        return params, total / num_steps.clamp(min=1)

    def train_by_epoch(
        self,
        params: Params,
        data: ClientData,
        key: Tensor,
        epochs: int,
        max_batches: int,
        on_epoch: Callable[[int, Params], None],
        loss: LossFn | None = None,
    ) -> Params:
        """`epochs` epochs with one optimizer state throughout, calling
        on_epoch(e, params) after epoch e = 1..epochs. Takes exactly the steps
        of `train(num_steps=epochs * batches_per_epoch)`; `max_batches` bounds
        the batches of one epoch (the cohort's largest)."""
        state = self.opt.init(params)
        nb = self.batches_per_epoch(data.n)
        for e in range(epochs):
            for b in range(max_batches):
                step = e * nb + b
                g, _ = self.grad(params, self.batch(data, key, step), rng.fold(key, 1000 + step), loss)
                new, new_state = self.opt.update(params, g, state)
                active = b < nb
                params = where_tree(active, new, params)
                state = where_tree(active, new_state, state)
            on_epoch(e + 1, params)
        return params

    def evaluate(self, params: Params, data: ClientData) -> tuple[Tensor, Tensor]:
        """(correct, counted) on all real examples of `data`."""
        x, y, mask = self.full_batch(data)
        return self.task.correct(params, x, y, mask)
