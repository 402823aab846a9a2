"""Atomic checkpoints: the whole run state every `every` rounds and at the end.

The file is written to a temporary name and renamed, so `last.ckpt` is always
a complete checkpoint even if the process is killed (kill -9) while saving.
It holds the global model, every stage's server optimizer state, the round
counter, per-client state, the evaluation history and RNG states.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytorch_lightning as pl


class RoundCheckpoint(pl.Callback):
    def __init__(self, dirpath: str | os.PathLike, every: int):
        self.dir = Path(dirpath)
        self.every = every

    @property
    def last(self) -> Path:
        return self.dir / "last.ckpt"

    def save(self, trainer: pl.Trainer) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / ".last.ckpt.tmp"
        trainer.save_checkpoint(tmp)  # every rank calls it; rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, self.last)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        r = int(pl_module.round)
        if self.every and r % self.every == 0 and r < pl_module.total_rounds:
            self.save(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self.save(trainer)
