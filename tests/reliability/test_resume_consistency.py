"""A resume checks its checkpoint against the configuration before touching a file, and repairs a
damaged metrics.csv tail (pfl.engine.resume_check, pfl.engine.files.kept_rows). Real files: a finished
tiny run, its checkpoint or metrics.csv damaged, resumed through `pfl.cli.main` in this process."""

from __future__ import annotations

import csv
import hashlib
import shutil

import pytest
import torch

from pfl.engine.checkpoint import CheckpointError
from pfl.engine.resume_check import _check_stages
from tests.cli.test_bad_input import cli, one_error_line
from tests.helpers import TINY


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from pfl.run import train
    from tests.helpers import compose_cfg

    run = tmp_path_factory.mktemp("finished") / "run"
    train(compose_cfg([]), run)  # TINY: 4 rounds, checkpoint at round 4
    return run


def run_files(run):  # what a refused resume must leave as it was (Hydra rewrites .hydra/ and appends to its log)
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in run.rglob("*")
            if p.is_file() and p.suffix != ".log" and ".hydra" not in p.parts}


def _edit_state(last, edit):
    ckpt = torch.load(last, weights_only=True)
    edit(ckpt["state_dict"])
    torch.save(ckpt, last)


def _first_param(state):
    return next(k for k in state if k.startswith("global_params."))


DAMAGE = [("extra-tensor", lambda s: s.__setitem__("global_params.stray", torch.zeros(2)), ["not in the model",
                                                                                        "global_params.stray"]),
          ("missing-tensor", lambda s: s.pop(_first_param(s)), ["missing: global_params."]),
          ("other-shape", lambda s: s.__setitem__(_first_param(s), torch.zeros(3, 3)), ["of another shape", "[3, 3]"])]


@pytest.mark.parametrize("edit,words", [d[1:] for d in DAMAGE], ids=[d[0] for d in DAMAGE])
def test_checkpoint_that_does_not_match_the_model(edit, words, finished, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    _edit_state(run / "checkpoints" / "last.ckpt", edit)
    before = run_files(run)
    code, out, err = cli(TINY + ["resume=true", f"hydra.run.dir={run}"], capsys, monkeypatch)
    one_error_line(code, out, err, 2, ["resume:", "does not match the model", *words])
    assert run_files(run) == before


def test_rounds_below_the_checkpoint_round(finished, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    before = run_files(run)
    code, out, err = cli(TINY + ["rounds=2", "resume=true", f"hydra.run.dir={run}"], capsys, monkeypatch)
    one_error_line(code, out, err, 2, ["is at round 4", "rounds add up to 2", "at least 4"])
    assert run_files(run) == before


def test_damaged_metrics_tail_is_dropped_with_a_warning(finished, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    text = (run / "metrics.csv").read_text()
    lines = text.splitlines(keepends=True)
    damaged = lines[:-2] + ["3,\x00\x00garbage\n", lines[-1][: len(lines[-1]) // 2]]  # power loss: NULs, a cut line
    (run / "metrics.csv").write_text("".join(damaged))
    code, out, err = cli(TINY + ["rounds=6", "resume=true", f"hydra.run.dir={run}"], capsys, monkeypatch)
    assert code == 0, err[-3000:]
    assert "dropped 2 damaged row(s)" in out + err
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rounds = [int(float(r["round"])) for r in rows]
    assert rounds == sorted(set(rounds)) and rounds[-1] == 6 and 4 not in rounds and 5 in rounds
    assert all(None not in r.values() and "\x00" not in "".join(r.values()) for r in rows)


def test_stage_layout_rules():
    _check_stages([5, 5], [5, 9], 7, "ckpt")  # the stage it is in grows
    _check_stages([5, 5, 5], [5, 5, 2], 7, "ckpt")  # a stage not entered yet shrinks
    _check_stages([5, 5], [5, 2], 7, "ckpt")  # ... or ends at the checkpoint's round
    for now, rnd in (([5, 1], 7), ([8, 5], 7), ([4, 6], 7)):
        with pytest.raises(CheckpointError, match="moves the checkpoint's round"):
            _check_stages([5, 5], now, rnd, "ckpt")
    with pytest.raises(CheckpointError, match="2 stages, this one 3"):
        _check_stages([5, 5], [5, 5, 5], 3, "ckpt")
