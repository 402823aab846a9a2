"""Run-directory ownership (pfl.engine.run_dir) with real processes and real files.

A `python -m pfl` child process owns a folder while it trains; this test process, through the real
entry point `pfl.cli.main`, is a second run and a resume aimed at the same folder. A new run aimed at
a finished run's folder is refused before Hydra writes anything: every file's hash is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pfl.engine.run_dir import LOCK, RunDirBusy, claim
from tests.cli.test_bad_input import cli, one_error_line
from tests.helpers import REPO, TINY


def hashes(run: Path) -> dict[str, str]:
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny run made through the command line (with Hydra's .hydra/ and log)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(sys, "argv", ["pfl", *TINY, "rounds=2", f"hydra.run.dir={run}"])
        from pfl.cli import main

        main()
    finally:
        mp.undo()
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    assert not (run / LOCK).exists()  # released on exit
    return run


def test_new_run_into_a_finished_run_is_refused_and_changes_nothing(finished, capsys, monkeypatch):
    before = hashes(finished)
    assert any(k.startswith(".hydra") for k in before) and "pfl.log" in before
    code, out, err = cli(TINY + ["rounds=2", "seed=3", f"hydra.run.dir={finished}"], capsys, monkeypatch)
    one_error_line(code, out, err, 2, [f"hydra.run.dir={finished} holds a finished run", "resume=true",
                                       "overwrite=true"])
    assert hashes(finished) == before


def test_overwrite_replaces_the_run(finished, tmp_path, capsys, monkeypatch):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    code, out, err = cli(TINY + ["rounds=1", "eval_every=1", "overwrite=true", f"hydra.run.dir={run}"], capsys,
                         monkeypatch)
    assert code == 0, err[-2000:]
    assert json.loads((run / "summary.json").read_text())["rounds"] == 1


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / LOCK).write_text(json.dumps({"pid": dead.pid, "host": "h", "started": "then"}))
    with caplog.at_level(logging.WARNING, logger="pfl"):
        with claim(tmp_path):
            assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert f"pid {dead.pid}" in caplog.text and "no longer running" in caplog.text
    assert not (tmp_path / LOCK).exists()


def test_claims_nest_within_one_process(tmp_path):
    with claim(tmp_path) as outer:
        with claim(tmp_path):
            pass
        assert (tmp_path / LOCK).exists()  # the inner release leaves the outer claim
    assert outer.key is None and not (tmp_path / LOCK).exists()


@pytest.mark.slow  # a real `python -m pfl` (about 8 s of CPU to start); CI runs it
def test_second_run_and_resume_into_a_live_run_are_refused(tmp_path, capsys, monkeypatch):
    """A real `python -m pfl` trains in `run`; a second run and a resume, started meanwhile into the
    same folder, stop with one line naming its pid; the live run is then stopped cleanly (SIGTERM)."""
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
    live = subprocess.Popen([sys.executable, "-m", "pfl", *TINY, "rounds=100000", "eval_every=100000",
                             "checkpoint_every=1", f"hydra.run.dir={run}"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (run / "checkpoints" / "last.ckpt").exists() and time.time() < deadline and live.poll() is None:
            time.sleep(0.05)
        assert live.poll() is None, live.stderr.read()[-2000:]
        rows = (run / "metrics.csv").read_text()
        for extra in (["seed=1"], ["resume=true"], ["overwrite=true"]):
            code, out, err = cli(TINY + [*extra, f"hydra.run.dir={run}"], capsys, monkeypatch)
            one_error_line(code, out, err, 2, [f"hydra.run.dir={run} is in use by another run", f"pid {live.pid}"])
        assert json.loads((run / LOCK).read_text())["pid"] == live.pid
        assert (run / "metrics.csv").read_text().startswith(rows.split("\n")[0])  # one header: nothing interleaved
    finally:
        live.send_signal(signal.SIGTERM)
        _, err = live.communicate(timeout=60)
    assert live.returncode == 143, err[-2000:]
    assert not (run / LOCK).exists()
