"""End-to-end runs through the real command line and through train(cfg)."""

import json
import math
import re

import pytest

from tests.helpers import TINY, compose_cfg, run_cli
from pfl.run import train


@pytest.mark.slow  # a real `python -m pfl` process
def test_cli_smoke_writes_outputs(tmp_path):
    run = tmp_path / "run"
    proc = run_cli(TINY + [f"hydra.run.dir={run}", "personalization.interim_clients=3"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "loading data set synthetic ..." in out  # a line before the data loads (LEAF: a minute)
    assert re.search(r"round 2: heldout initial_acc=\S+, .*\(sample of 3 of 8 clients\)", out)  # interim: a sample
    assert re.search(r"round 4: heldout .*\(all 8 clients\)", out)
    assert f"run directory: {run}\n" in proc.stdout  # where the files are, and how to continue the run
    assert f"resume=true hydra.run.dir={run}" in proc.stdout.splitlines()[-1]
    summary = json.loads((run / "summary.json").read_text())
    for key in ("algorithm", "dataset", "rounds", "initial_accuracy", "personalized_accuracy", "wall_time_s"):
        assert key in summary
    assert isinstance(summary["initial_accuracy"], float)
    assert set(summary["personalized_accuracy"]) == {"1", "2"}
    assert summary["rounds"] == 4
    import csv

    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["round"]) for r in rows] == [1, 2, 3, 4]  # one row per round, step = round
    assert all(float(r["train/loss"]) > 0 for r in rows)
    assert [r["heldout/initial_acc"] != "" for r in rows] == [False, True, False, True]  # evaluations at 2 and 4
    assert summary["final"]["heldout/pers_acc_2"] == summary["personalized_accuracy"]["2"]
    assert (run / "config.yaml").exists() and (run / "checkpoints" / "last.ckpt").exists()
    assert (run / "clients_heldout.csv").read_text().count("\n") == 1 + 8  # 8 held-out clients
    assert "initial" in proc.stdout and "held-out" in proc.stdout  # the printed table
    assert not list(run.glob("plots/*.png"))  # plots=false (tests/helpers' TINY) draws none


def test_backends_give_the_same_summary(tmp_path):
    common = ["rounds=3", "eval_every=3", "model.dropout=0.3"]
    a = train(compose_cfg(common + ["engine.backend=vmap"]), tmp_path / "a")
    b = train(compose_cfg(common + ["engine.backend=sequential"]), tmp_path / "b")
    assert a["backend"] == "vmap" and b["backend"] == "sequential"
    assert abs(a["initial_accuracy"] - b["initial_accuracy"]) < 1e-4
    for k in a["personalized_accuracy"]:
        assert abs(a["personalized_accuracy"][k] - b["personalized_accuracy"][k]) < 1e-4


@pytest.mark.parametrize("overrides", [
    ["algorithm=reptile", "algorithm.local_steps=3", "server_opt=adam", "client_opt.lr=0.05", "zeta=0.4"],
    ["algorithm=fedsgd", "server_opt=sgdm", "client_opt=adam"],
    ["personalization.client_opt={_target_: pfl.optim.ClientAdam, lr: 0.01, batch_size: 100}"],
])
def test_settings_from_the_command_line_run(tmp_path, overrides):
    s = train(compose_cfg(overrides), tmp_path)
    assert all(math.isfinite(v) for v in s["personalized_accuracy"].values())


def test_personalization_helps_on_default_data(tmp_path):
    s = train(compose_cfg(["rounds=6", "eval_every=6"]), tmp_path)
    assert s["personalized_accuracy"]["2"] > s["initial_accuracy"] + 0.05
