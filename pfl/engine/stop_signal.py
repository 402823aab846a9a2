"""SIGTERM / SIGINT / SIGHUP (a closed terminal, a dropped ssh connection) during a run: `StopOnSignal` turns the signal into a flag that the run reads
between rounds and, inside an evaluation, between chunks of clients (`check`), so a stop takes at
most one round or one evaluation chunk; it raises `pfl.engine.faults.Stopped`. A second signal of
the same kind ends the process at once (the default action).
"""

from __future__ import annotations

import os
import signal
import threading

import pytorch_lightning as pl

from pfl.engine.faults import Stopped


class StopOnSignal(pl.Callback):
    """SIGTERM/SIGINT/SIGHUP set a flag; `check()` raises Stopped once it is set (while the run trains)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, *((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()))

    def __init__(self, checkpoint=None):
        self.checkpoint = checkpoint  # a RoundCheckpoint: saved when the stop comes between rounds
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self._previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.signum == signum:  # the second one: do what the signal does by default, now
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum

    def requested(self, trainer: pl.Trainer | None = None) -> bool:
        """Whether a stop was asked for; with several ranks, on any of them (all stop at the same round)."""
        flag = self.signum is not None
        if trainer is not None and trainer.world_size > 1:
            flag = trainer.strategy.reduce_boolean_decision(flag, all=False)
            self.signum = self.signum or (signal.SIGTERM if flag else None)
        return flag

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Between rounds: checkpoint the round just completed, then stop."""
        if self.requested(trainer):
            if self.checkpoint is not None:
                self.checkpoint.save(trainer)
            raise Stopped(self.signum, int(pl_module.round))

    def check(self) -> None:
        """Inside a round or an evaluation: stop now (the round's state is not checkpointed)."""
        if self.signum is not None:
            raise Stopped(self.signum)
