"""Two sweep workers on one study in a real PostgreSQL server; one is killed with SIGKILL mid-trial.

What must hold: the budget is met exactly (n_trials COMPLETE), no trial number ran twice, the
killed worker's trial is failed as stale and its parameters run again as a new trial (retried,
not lost), and no other trial is lost or duplicated.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from tests.helpers import REPO, TINY_FAST, tiny
from tests.helpers.postgres import postgres_url  # noqa: F401 - fixture

N = 3
TINY = tiny({**TINY_FAST, "rounds": 8, "eval_every": 8})  # a trial lasts a few seconds: time to kill it mid-way
SWEEP = ["+sweep=fedavg_e_lr", "sweep.objectives=[personalized_accuracy.2]", "sweep.pruner=null",
         f"sweep.n_trials={N}", "sweep.heartbeat_s=0.5", "sweep.stale_after_s=3"]


def _worker(url: str, sweep_dir, log):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    return subprocess.Popen([sys.executable, "-m", "pfl", "-m", *SWEEP, *TINY, f"sweep.storage={url}",
                             f"hydra.sweep.dir={sweep_dir}"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def _trials(url):
    try:
        return optuna.load_study(study_name="fedavg_e_lr", storage=url).get_trials()
    except KeyError:  # not created yet
        return []


@pytest.mark.slow  # real processes (interpreter start-up dominates); runs in the full suite
def test_two_workers_on_postgres_one_killed_mid_trial(postgres_url, tmp_path):  # noqa: F811
    url = postgres_url
    logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(3)]
    a = _worker(url, tmp_path, logs[0])
    deadline = time.time() + 180
    while time.time() < deadline and not (tmp_path / "trial_0" / ".hydra").is_dir():  # a's first trial has started
        assert a.poll() is None, (tmp_path / "worker0.log").read_text()[-3000:]
        time.sleep(0.1)
    # killed at once: on an idle machine the tiny trial finishes within a second of starting
    assert [t.state for t in _trials(url) if t.number == 0] == [TrialState.RUNNING]
    os.kill(a.pid, signal.SIGKILL)
    a.wait()
    b = _worker(url, tmp_path, logs[1])  # the second worker meets the killed worker's stale trial
    assert b.wait(timeout=600) == 0, (tmp_path / "worker1.log").read_text()[-3000:]
    # the same command once more (a rerun, or a worker that starts late): it retries the stale trial if b did not
    c = _worker(url, tmp_path, logs[2])
    assert c.wait(timeout=600) == 0, (tmp_path / "worker2.log").read_text()[-3000:]
    for f in logs:
        f.close()

    ts = _trials(url)
    complete = [t for t in ts if t.state == TrialState.COMPLETE]
    assert len(complete) == N, [(t.number, t.state.name) for t in ts]  # the budget, exactly
    assert len({t.number for t in complete}) == N
    assert len({tuple(sorted(t.params.items())) for t in complete}) == N  # no point ran twice
    killed = ts[0]
    assert killed.state == TrialState.FAIL and killed.user_attrs.get("pfl_stale")  # failed, not counted
    retry = [t for t in complete if t.user_attrs.get("retry_of") == 0]
    assert len(retry) == 1 and retry[0].params == killed.params  # ... and retried with its parameters
    assert [t for t in ts if t.state not in (TrialState.COMPLETE, TrialState.FAIL)] == []  # nothing left hanging
    assert len(ts) == N + 1
