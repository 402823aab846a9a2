"""Whole runs through `pfl.run.train`: interrupt one at a round, read its files, compare two."""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path

import pytorch_lightning as pl

# the summary entries that an interrupted-then-resumed run must reproduce exactly
ACCURACY_KEYS = ("initial_accuracy", "personalized_accuracy", "personalization_curve", "train_clients")


class _Crash(pl.Callback):
    def __init__(self, at_round):
        self.at_round = at_round

    def on_train_batch_end(self, trainer, module, *args):
        if int(module.round) == self.at_round:
            raise KeyboardInterrupt("simulated crash")


@contextlib.contextmanager
def crash_at(round_: int):
    """Runs started inside stop with an exception once `round_` rounds are done (after that round's
    checkpoint, if one is due)."""
    from pfl.config import hooks

    hooks.register("crash", lambda cfg: [_Crash(round_)])
    try:
        yield
    finally:
        hooks._FACTORIES.pop("crash")


def same_results(a: dict, b: dict) -> None:
    """Two summaries report the same accuracies, bytes and rounds to target."""
    for k in ACCURACY_KEYS:
        assert a[k] == b[k], k
    assert a["bytes"] == b["bytes"] and a["rounds_to_target"] == b["rounds_to_target"]


def metrics_rows(run_dir: str | Path) -> list[dict]:
    """metrics.csv as a list of {column: text} (one row per evaluated round)."""
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def kill_once_checkpointed(cmd: list[str], run_dir: Path, env: dict, timeout: float = 300) -> None:
    """Start `cmd` (a `python -m pfl ...` writing to `run_dir`) in its own process group and SIGKILL the
    whole group (every rank) as soon as its first checkpoint exists; the run must not have finished."""
    import os
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, cwd=run_dir.parent, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + timeout
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), "no checkpoint was written before the kill"
    assert not (run_dir / "summary.json").exists(), "the run finished before it could be killed"


def close_tree(a, b, path: str = "", tol: float = 1e-5) -> None:
    """Two nested summaries (dicts, lists, numbers) are equal, floats to `tol`; `path` names the first difference."""
    import pytest

    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            close_tree(a[k], b[k], f"{path}.{k}", tol)
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            close_tree(x, y, f"{path}[{i}]", tol)
    elif isinstance(a, float):
        assert a == pytest.approx(b, abs=tol), path
    else:
        assert a == b, path
