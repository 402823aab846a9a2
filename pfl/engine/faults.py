"""How a run ends when something goes wrong: one line, an exit status, and files a resume can use.

- `RunFailure`: a failure of the run or its environment that is not a configuration mistake
  (the disk filled up while saving a checkpoint): one line, exit status 1.
- `Diverged`: a non-finite loss or server update; exit status 3; summary.json says
  `"status": "diverged"` and the last good checkpoint is left as it was.
- `Stopped`: SIGTERM or SIGINT. `StopOnSignal` turns the signal into a flag that the run reads
  between rounds and, inside an evaluation, between chunks of clients (`check`), so a stop takes
  at most one round or one evaluation chunk; exit status 128 + the signal (143, 130). A second
  signal of the same kind ends the process at once (the default action).

`Stopped` is a BaseException, not an Exception: a sweep stops on it (its trial is queued again)
instead of recording a failed trial and starting the next one.
"""

from __future__ import annotations

import os
import signal
import threading

import pytorch_lightning as pl


class RunFailure(Exception):
    exit_code = 1


class Diverged(RunFailure):
    exit_code = 3

    def __init__(self, round: int, metric: str, value: float):
        self.round, self.metric, self.value = round, metric, value
        self.checkpoint, self.checkpoint_round, self.hint = None, None, ""
        super().__init__(f"training diverged at round {round} ({metric} {value})")

    def __str__(self) -> str:
        if self.checkpoint is None:  # raised in a round; the run fills in what it kept
            return self.args[0]
        if self.checkpoint_round is None:
            kept = "no checkpoint was written before it"
        else:
            kept = f"the last good checkpoint (round {self.checkpoint_round}) is kept at {self.checkpoint}"
        return f"{self.args[0]}; {kept}" + (f"; {self.hint}" if self.hint else "")


class Stopped(BaseException):
    def __init__(self, signum: int, round: int | None = None):
        self.signum, self.round = signum, round
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)


class StopOnSignal(pl.Callback):
    """SIGTERM/SIGINT set a flag; `check()` raises Stopped once it is set (while the run trains)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

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
