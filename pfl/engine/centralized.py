"""Training on the pooled data of all training clients (the centralized baseline).

`CentralizedModule` is a `FederatedModule` whose training step is one epoch
of minibatch training on the union of the training clients' examples, with
the optimizer the algorithm makes (`algorithm.make_optimizer`, e.g. Adam).
Everything after training is inherited unchanged: the personalization
evaluation of held-out and training clients, metrics, checkpoints and the
summary, so a centralized model is evaluated exactly like a federated one.
The engine selects it for algorithms with `pooled = True`.
"""

from __future__ import annotations

import math

import torch

from pfl import rng
from pfl.config_errors import ConfigError
from pfl.engine.module import FederatedModule


class CentralizedModule(FederatedModule):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if len(self.stages) != 1:
            raise ConfigError("stages", [s.name for s in self.stages], "a single stage for a pooled (centralized) algorithm")
        self.stages[0].rounds = self.stages[0].algorithm.epochs  # one round = one epoch
        self.total_rounds = self.stages[0].rounds

    def configure_optimizers(self):
        return self.stages[0].algorithm.make_optimizer(list(self.global_params.values()))

    def epoch_order(self, epoch: int, n: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(rng.key(self.seed, epoch, 0xCE47)))
        return torch.randperm(n, generator=g).to(self.device)

    def training_step(self, batch, batch_idx):
        r = int(self.round)
        alg = self.stages[0].algorithm
        opt = self.optimizers()
        pool = self.data.train.train  # every training client's examples, back to back
        n = pool.x.shape[0]
        order = self.epoch_order(r, n)
        task = self.local.task
        self.model.train()
        epoch_key = rng.key(self.seed, r, 0xD0)
        starts = range(0, n, alg.batch_size)
        total = torch.zeros((), device=self.device)
        for b, start in enumerate(starts):
            idx = order[start:start + alg.batch_size]
            mask = torch.ones(len(idx), dtype=torch.bool, device=self.device)
            loss = task.loss(self.params(), pool.x[idx], pool.y[idx], mask, rng.fold(epoch_key, b).to(self.device))
            opt.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            # Lightning counts its optimizer's steps as global steps (max_steps = rounds):
            # step the plain torch optimizer inside the epoch and Lightning's once, last.
            (opt if b == len(starts) - 1 else opt.optimizer).step()
            total = total + loss.detach()
        batches = len(starts)
        self.round += 1
        metrics = {"train/loss": float(total) / max(batches, 1), "round": r + 1, "stage": 0, "bytes/down": 0, "bytes/up": 0}
        if not math.isfinite(metrics["train/loss"]):
            raise FloatingPointError(f"epoch {r + 1}: non-finite training loss")
        self.log("loss", metrics["train/loss"], prog_bar=True, on_step=True, logger=False)
        if (r + 1) % self.eval_every == 0 or r + 1 == self.total_rounds:
            self.evaluate_and_log(r + 1, metrics)
