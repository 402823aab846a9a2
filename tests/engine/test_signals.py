"""SIGTERM / SIGINT in the middle of an evaluation: the run stops within seconds, keeps the last
completed round's checkpoint, says how to resume, and the resumed run ends as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from pfl.run import train
from tests.helpers import REPO, compose_cfg, tiny

# evaluations of one client per chunk (the stop is checked between chunks), some seconds in all
ARGS = tiny({"rounds": 4, "eval_every": 2, "checkpoint_every": 1, "personalization.curve_epochs": 10,
             "personalization.heldout_clients": 4, "personalization.train_clients": 2, "engine.eval_chunk_size": 1,
             "trainer.enable_progress_bar": "true"})  # the evaluation's bar on stderr tells the test it has begun


def _pfl(run, *extra, stderr):
    env = dict(os.environ, PYTHONPATH=str(REPO), WANDB_MODE="disabled", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "pfl", *ARGS, f"hydra.run.dir={run}", *extra], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=stderr)


@pytest.mark.slow  # real processes (interpreter start-up dominates); runs in the full suite
@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_evaluation_stops_fast_and_resumes_to_the_same_result(signum, code, tmp_path):
    cut = tmp_path / "cut"
    with open(tmp_path / "err.txt", "w") as err:
        proc = _pfl(cut, stderr=err)
        ckpt = cut / "checkpoints" / "last.ckpt"
        deadline = time.time() + 300
        # the evaluation of round 2 has begun (its progress bar is on stderr)
        while "evaluation (round 2)" not in (tmp_path / "err.txt").read_text() and time.time() < deadline:
            assert proc.poll() is None, (tmp_path / "err.txt").read_text()[-3000:]
            time.sleep(0.02)
        t0 = time.perf_counter()
        os.kill(proc.pid, signum)
        rc = proc.wait(timeout=60)
        took = time.perf_counter() - t0
    text = (tmp_path / "err.txt").read_text()
    assert rc == code, text[-3000:]
    assert took <= 30, took  # seconds (10 on an idle machine); the structural check is the metrics row below
    assert "Traceback" not in text
    assert "evaluation (round 2)" in text  # it was evaluating
    assert f"stopped at round 1 (stopped by {signal.Signals(signum).name}); resume with: python -m pfl " in text
    assert f"resume=true hydra.run.dir={cut}" in text
    assert int(torch.load(ckpt, weights_only=True)["state_dict"]["round"]) == 1  # the last completed round
    assert not (cut / "summary.json").exists()
    rows = (cut / "metrics.csv").read_text().splitlines() if (cut / "metrics.csv").exists() else []
    assert not [r for r in rows if r.startswith("2,")], rows  # round 2's evaluation was cut, not finished first
    if signum != signal.SIGTERM:
        return
    with open(tmp_path / "err2.txt", "w") as err:
        assert _pfl(cut, "resume=true", stderr=err).wait(timeout=300) == 0, (tmp_path / "err2.txt").read_text()[-3000:]
    resumed = json.loads((cut / "summary.json").read_text())
    full = train(compose_cfg([a for a in ARGS if not a.startswith("hydra")]), tmp_path / "full")
    for k in ("initial_accuracy", "personalized_accuracy", "personalization_curve", "train_clients", "bytes",
              "rounds_to_target"):
        assert resumed[k] == full[k], k
    rows = (cut / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == [r.split(",")[0] for r in (tmp_path / "full" / "metrics.csv").read_text().splitlines()]
