"""Sweeps end to end through `python -m pfl -m` on a tiny synthetic data set (no network).

One 4-trial Optuna sweep covers the outcomes: complete, pruned (by the median
pruner, at its first evaluation), failed by divergence (NaN loss) and failed
by a bad setting; its runs log to W&B offline against a loopback address that
must see no connection. Two workers share one SQLite study, then a rerun
resumes it. A Hydra grid and the report of each finish it off.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.helpers import REPO as ROOT
from tests.helpers import TINY_FAST, tiny

TINY = tiny(TINY_FAST)
# the shipped FedAvg sweep, with objectives that the tiny runs produce and a pruner that acts at once
SWEEP = ["+sweep=fedavg_e_lr", "sweep.objectives=[heldout/pers_acc_2]",
         "sweep.report=heldout/pers_acc_2", "sweep.pruner.n_startup_trials=1",
         "sweep.pruner.n_warmup_steps=0"]


def pfl(*args: str, env: dict | None = None, wait: bool = True):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled",
                "HYDRA_FULL_ERROR": "1", **(env or {})}
    cmd = [sys.executable, "-m", "pfl", *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    res = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=600)
    return res.returncode, res.stdout + res.stderr


def trials(sweep_dir: Path, name: str = "fedavg_e_lr"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir / 'optuna.db'}").get_trials()


class Listener:
    """A loopback TCP port that counts connections (W&B offline must never open one)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
                self.connections += 1
                conn.close()
            except OSError:
                pass

    def close(self):
        self._stop = True
        self._t.join()
        self.sock.close()


@pytest.fixture(scope="module")
def outcome_sweep(tmp_path_factory):
    """complete, pruned, diverged, bad setting: four enqueued points, run as one sweep."""
    d = tmp_path_factory.mktemp("outcomes")
    study = optuna.create_study(study_name="fedavg_e_lr", storage=f"sqlite:///{d / 'optuna.db'}", direction="maximize")
    for epochs, lr in [(1, 0.1), (1, 1e-6), (1, 1e30), (0, 0.1)]:
        study.enqueue_trial({"algorithm.local_epochs": epochs, "client_opt.lr": lr})
    listener = Listener()
    t0 = time.perf_counter()
    rc, out = pfl("-m", *SWEEP, *TINY, "sweep.n_trials=4", "algorithm.local_epochs=range(0,3)",
                  "client_opt.lr=tag(log,interval(1e-7,1e31))", "logger=wandb", f"hydra.sweep.dir={d}",
                  env={"WANDB_MODE": "offline", "WANDB_BASE_URL": f"http://127.0.0.1:{listener.port}",
                       "WANDB_API_KEY": ""})
    wall = time.perf_counter() - t0
    listener.close()
    return d, rc, out, wall, listener.connections


@pytest.mark.slow  # a real sweep of several trials (shared by the next two tests)
def test_sweep_records_complete_pruned_and_failed_trials(outcome_sweep):
    d, rc, out, wall, _ = outcome_sweep
    assert rc == 0, out[-3000:]
    ts = trials(d)
    assert [t.state for t in ts] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.FAIL], out[-3000:]
    assert 0 < ts[0].value <= 1
    assert ts[0].value == json.loads((d / "trial_0" / "summary.json").read_text())["personalized_accuracy"]["2"]
    assert sorted(ts[0].intermediate_values) == [1, 2]
    assert list(ts[1].intermediate_values) == [1]  # stopped at its first evaluation, below trial 0's
    assert ts[1].intermediate_values[1] < ts[0].intermediate_values[1]
    assert ts[2].user_attrs["fail_reason"].startswith("Diverged: training diverged at round ")
    assert ts[3].user_attrs["fail_reason"].startswith("ConfigError: algorithm.local_epochs=0")
    assert json.loads((d / "trial_1" / "trial.json").read_text())["state"] == "PRUNED"
    assert (d / "trial_1" / "metrics.csv").read_text().count("\n") == 2  # header + round 1


@pytest.mark.slow  # the sweep above
def test_wandb_offline_runs_are_grouped_marked_and_never_touch_the_network(outcome_sweep):
    d, rc, out, wall, connections = outcome_sweep
    assert rc == 0
    assert connections == 0
    files = list(d.glob("trial_*/wandb/offline-run-*/run-*.wandb"))
    runs = {p.parents[2].name: p for p in files}
    # one W&B run per trial that started training (trial 3 failed before); none left open and reused
    assert sorted(p.parents[2].name for p in files) == ["trial_0", "trial_1", "trial_2"]
    pruned = runs["trial_1"].read_bytes()
    assert b"pruned" in pruned and b"PRUNED" in pruned and b"fedavg_e_lr" in pruned  # tag, state, group
    assert b"Diverged" in runs["trial_2"].read_bytes()
    assert b"zeta:1.0" in runs["trial_0"].read_bytes()
    assert "wandb sync" in out


@pytest.mark.slow  # the sweep above
def test_report_of_the_finished_sweep(outcome_sweep):
    from pfl.report.__main__ import main

    d = outcome_sweep[0]
    assert main([str(d)]) == 0
    page = (d / "report.html").read_text()
    assert page.count('<tr class="') == 4
    for word in ("COMPLETE", "PRUNED", "Diverged", "ConfigError", "client_opt.lr", "algorithm.local_epochs"):
        assert word in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 3  # objective/params, history, convergence


@pytest.mark.slow  # real processes (interpreter start-up dominates); runs in the full suite
def test_two_workers_share_one_study_then_a_rerun_resumes_it(tmp_path):
    args = ["-m", *SWEEP, *TINY, "sweep.n_trials=3", "sweep.pruner=null", f"hydra.sweep.dir={tmp_path}"]
    workers = [pfl(*args, wait=False) for _ in range(2)]
    outs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outs[0][-2000:] + outs[1][-2000:]
    ran = [set(map(int, re.findall(r"#(\d+) complete ", o))) for o in outs]
    assert not ran[0] & ran[1]  # no trial ran twice
    assert ran[0] | ran[1] == {0, 1, 2}  # none lost
    ts = trials(tmp_path)
    # a worker that lost the race for the last slot puts its trial back (WAITING, reused by a resume:
    # tests/sweep/test_units.py::test_loser_of_a_race_puts_its_trial_back_and_a_resume_reuses_it)
    done = [t for t in ts if t.state != TrialState.WAITING]
    assert [t.state for t in done] == [TrialState.COMPLETE] * 3 and len(ts) - len(done) <= 1, [t.state for t in ts]
    assert len({tuple(sorted(t.params.items())) for t in done}) == 3
    # the same command again, with a larger budget: one more trial, the first three untouched
    rc, out = pfl(*args[:-2], "sweep.n_trials=4", f"hydra.sweep.dir={tmp_path}")
    assert rc == 0, out[-2000:]
    assert re.findall(r"#(\d+) complete ", out) == ["3"]
    assert [t.state for t in trials(tmp_path)] == [TrialState.COMPLETE] * 4


@pytest.mark.slow  # real processes (interpreter start-up dominates); runs in the full suite
def test_hydra_grid_in_parallel_with_joblib_and_its_report(tmp_path):
    rc, out = pfl("-m", "algorithm=fedavg", "algorithm.local_epochs=1,2", *TINY, "hydra/launcher=joblib",
                  "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path}")
    assert rc == 0, out[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in out
    for job in ("0", "1"):
        assert (tmp_path / job / "summary.json").is_file()
    from pfl.report.__main__ import main

    assert main([str(tmp_path), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert page.count('<tr class="COMPLETE') == 2 and "algorithm.local_epochs" in page
