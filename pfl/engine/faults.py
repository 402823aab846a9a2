"""How a run ends when something goes wrong: one line, an exit status, and files a resume can use.

- `RunFailure`: a failure of the run or its environment that is not a configuration mistake
  (the disk filled up while saving a checkpoint): one line, exit status 1.
- `Diverged`: a non-finite loss or server update; exit status 3; summary.json says
  `"status": "diverged"` and the last good checkpoint is left as it was.
- `Stopped`: SIGTERM or SIGINT (raised by `pfl.engine.stop_signal.StopOnSignal`); exit status
  128 + the signal (143, 130).

No Lightning here: the command line imports these before it knows whether a run follows, and
the signal callback that needs Lightning lives in `pfl.engine.stop_signal`.

`Stopped` is a BaseException, not an Exception: a sweep stops on it (its trial is queued again)
instead of recording a failed trial and starting the next one.
"""

from __future__ import annotations

import signal


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
