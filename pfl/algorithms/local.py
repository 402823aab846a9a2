"""Local training on one client: minibatches, the step loop, the client optimizer.

Written once for every algorithm. All functions take one client's padded data
(`ClientData` with `n` real examples) and are pure, so the backend can run them
per client or vmapped over a cohort. Steps run on the backend's `StepLoop`
(`local.loop`, set by `Backend.map`): a client with fewer steps than the
chunk's largest treats the extra ones as no-ops, which keeps every client's
result identical between the two backends.

Minibatches: epoch e visits the client's examples in the order
`rng.permutation(fold(key, e))`, in batches of `batch_size`; the last batch of
an epoch may be short (masked under vmap; cut to its real rows for one client on
a CPU, where shapes may depend on the data). Step s belongs to epoch s // batches_per_epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import Tensor
from torch.func import grad_and_value

from pfl import rng
from pfl.data.federated import ClientData
from pfl.execution import Count, StepLoop, under_vmap
from pfl.task import Params, Task

LossFn = Callable[[Params, Tensor, Tensor, Tensor, Tensor], Tensor]


@dataclass
class LocalTrainer:
    task: Task
    opt: object  # a client optimizer from pfl.optim
    loop: StepLoop | None = None  # the backend's step loop for this client / chunk (None: the client's own count)

    def using(self, loop: StepLoop) -> "LocalTrainer":
        """This trainer running its steps on `loop` (what the backend hands each client function)."""
        return replace(self, loop=loop)

    def with_opt(self, opt) -> "LocalTrainer":
        """The same trainer (and loop) with another client optimizer."""
        return replace(self, opt=opt)

    def steps_loop(self, data: ClientData) -> StepLoop:
        # outside a backend (direct calls on one client): loop to the client's own count
        return self.loop if self.loop is not None else StepLoop(data.n)

    @property
    def batch_size(self) -> int:
        return self.opt.batch_size

    def batches_per_epoch(self, n: Tensor) -> Tensor:
        """ceil(n / batch_size), works on a scalar or a vector of counts."""
        return torch.div(n + self.batch_size - 1, self.batch_size, rounding_mode="floor")

    def epochs(self, e) -> Callable[[Tensor], Tensor]:
        """`steps` for `train`: e epochs of a client's data, e * ceil(n / batch_size) steps (0 for n = 0)."""
        return lambda n: e * self.batches_per_epoch(n)

    def batch(self, data: ClientData, key: Tensor, step) -> tuple[Tensor, Tensor, Tensor]:
        """The minibatch (x, y, mask) that local step `step` uses."""
        size = data.x.shape[0]
        nb = self.batches_per_epoch(data.n).clamp(min=1)
        epoch = torch.div(step, nb, rounding_mode="floor")
        first = (step - epoch * nb) * self.batch_size
        order = rng.permutation(rng.fold(key, epoch), data.n, size)
        width = min(self.batch_size, size)
        if data.x.device.type == "cpu" and not under_vmap():
            # one client outside vmap: an epoch's last batch holds only its real rows (no padded rows
            # computed and masked: 9% of TFF Shakespeare's rows at batch 20); the same loss and gradient
            width = max(min(width, int(data.n) - int(first)), 1)
        pos = first + torch.arange(width, device=data.x.device)
        idx = order[pos.clamp(max=size - 1)]
        mask = pos < data.n
        x = data.x[idx]
        if data.aug is not None and self.task.augment is not None:  # its key only where it is used
            x = self.augment(data, x, rng.fold(rng.fold(key, 0xA06), step))
        return x, data.y[idx], mask

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
        steps: Count,
        loss: LossFn | None = None,
    ) -> tuple[Params, Tensor]:
        """`steps` client-optimizer steps on the minibatches of steps 0, 1, ...;
        returns (params, mean loss). `steps` is a number or a function of the
        client's example count (FedAvg: E · batches_per_epoch).

        `loss` (default: the task's cross-entropy) lets an algorithm train a
        subset of parameters or add a regularizer.
        """

        def step(carry, s):
            params, state, total = carry
            g, value = self.grad(params, self.batch(data, key, torch.as_tensor(s, device=data.x.device)),
                                 rng.fold(key, 1000 + s), loss)
            new, new_state = self.opt.update(params, g, state)
            return new, new_state, total + value.detach()

        start = (params, self.opt.init(params), torch.zeros((), device=data.x.device))
        params, _, total = self.steps_loop(data)(start, step, steps, data.n)
        return params, total / StepLoop.per_client(steps, data.n).clamp(min=1)

    def train_by_epoch(
        self,
        params: Params,
        data: ClientData,
        key: Tensor,
        epochs: int,
        on_epoch: Callable[[int, Params], None],
        loss: LossFn | None = None,
    ) -> Params:
        """`epochs` epochs with one optimizer state throughout, calling
        on_epoch(e, params) after epoch e = 1..epochs. Takes exactly the steps
        of `train(steps=epochs * batches_per_epoch)`."""
        nb = self.batches_per_epoch(data.n)
        carry = (params, self.opt.init(params))
        loop = self.steps_loop(data)
        for e in range(epochs):

            def step(carry, b, _e=e):
                params, state = carry
                s = _e * nb + b
                g, _ = self.grad(params, self.batch(data, key, s), rng.fold(key, 1000 + s), loss)
                return self.opt.update(params, g, state)

            carry = loop(carry, step, self.batches_per_epoch, data.n)
            on_epoch(e + 1, carry[0])
        return carry[0]

    def evaluate(self, params: Params, data: ClientData) -> tuple[Tensor, Tensor]:
        """(correct, counted) on all real examples of `data`."""
        x, y, mask = self.full_batch(data)
        return self.task.correct(params, x, y, mask)
