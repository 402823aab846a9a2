"""Interrupted runs resume from the last checkpoint and end exactly as uninterrupted ones."""

import json
import os
import subprocess
import sys

import pytest
import torch

from pfl.run import train
from tests.helpers import REPO, TINY, compose_cfg
from tests.helpers.runs import crash_at, kill_once_checkpointed, same_results


def test_resume_after_crash_matches_uninterrupted(tmp_path):
    overrides = ["rounds=7", "eval_every=2", "checkpoint_every=3", "server_opt=adam", "model.dropout=0.2"]
    full = train(compose_cfg(overrides), tmp_path / "full")

    with crash_at(5), pytest.raises(BaseException):
        train(compose_cfg(overrides), tmp_path / "cut")
    ckpt = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)
    assert int(ckpt["state_dict"]["round"]) == 3
    resumed = train(compose_cfg(overrides + ["resume=true"]), tmp_path / "cut")
    same_results(full, resumed)
    rows = (tmp_path / "cut" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(r) for r in range(1, 8)]  # a row per round, none twice
    assert (tmp_path / "full" / "metrics.csv").read_text() .splitlines()[0] == rows[0]


@pytest.mark.slow  # real processes (interpreter start-up dominates); runs in the full suite
def test_kill_minus_9_then_resume(tmp_path):
    args = [a for a in TINY if not a.startswith(("rounds=", "checkpoint_every=", "eval_every="))]
    args += ["rounds=12", "checkpoint_every=2", "eval_every=6"]
    env = dict(os.environ, PYTHONPATH=str(REPO), WANDB_MODE="disabled")

    def cmd(run, *extra):
        return [sys.executable, "-m", "pfl", *args, f"hydra.run.dir={run}", *extra]

    cut = tmp_path / "cut"
    kill_once_checkpointed(cmd(cut), cut, env, timeout=120)
    done = subprocess.run(cmd(cut, "resume=true"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    full = train(compose_cfg(args, tiny=False), tmp_path / "full")  # the uninterrupted run, in this process
    same_results(full, json.loads((cut / "summary.json").read_text()))
