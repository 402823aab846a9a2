"""The property-based fault suite: generated damaged data files, damaged state files and numeric
settings, each run through the real entry point (`pfl.cli.main`, in this process).

The property, for every generated case (tests/reliability/fuzz.py: check_outcome): exit status 0, 2
or 3; no traceback; a failure told in at most 3 lines, one of them `error: ...`; and no file of an
existing run changed. The default suite tries a few cases of each kind (derandomized, so CI runs the
same ones); the `slow` soak runs many more with fresh randomness.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.cli.test_bad_input import DATA_FREE
from tests.helpers import TINY
from tests.reliability.fuzz import (NUMBERS, TRIED, check_outcome, cli_value, h5_damage, hashes, leaf_damage,
                                    run_main, write_h5, write_leaf)

# no shrinking: a case costs up to a second of CPU, and the failing case is printed as generated
FAST = settings(max_examples=2, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
                suppress_health_check=list(HealthCheck))
SOAK = settings(max_examples=int(os.environ.get("PFL_SOAK_EXAMPLES", "10")), deadline=None, database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck))

LEAF = DATA_FREE + ["dataset=femnist_leaf", "dataset.train_clients=3", "model=mlp", "rounds=1", "eval_every=1",
                    "clients_per_round=2", "personalization.train_clients=0"]
EMNIST = DATA_FREE + ["dataset=emnist", "dataset.train_clients=2", "model=mlp", "rounds=1", "eval_every=1",
                      "clients_per_round=2", "personalization.train_clients=0"]

# settings whose large valid values make a run long (not wrong): such values are checked against the
# refusal into an existing run only, not run to the end
COST_BOUND = {"rounds": 3, "clients_per_round": 16, "replicas": 2, "algorithm.local_epochs": 3,
              "personalization.curve_epochs": 3, "personalization.train_clients": 16,
              "personalization.heldout_clients": 8, "dataset.num_clients": 40, "dataset.dim": 64,
              "dataset.min_examples": 200, "dataset.max_examples": 200, "client_opt.batch_size": 10**4}
KEYS = sorted({*COST_BOUND, "zeta", "eval_every", "checkpoint_every", "seed", "client_opt.lr", "server_opt.lr",
               "personalization.target_accuracy", "personalization.track_every", "engine.eval_chunk_size",
               "dataset.train_clients", "dataset.alpha", "dataset.beta", "dataset.test_fraction"})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = tmp_path_factory.mktemp("existing") / "run"
    code, out, err = run_main(TINY + [f"hydra.run.dir={run}"])
    assert code == 0, err[-2000:]
    return run


def _cheap(key: str, value: str) -> bool:
    try:
        return abs(float(value)) <= COST_BOUND.get(key, float("inf"))
    except ValueError:
        return True


def prop_setting(finished: Path, key: str, value) -> None:
    v = cli_value(value)
    before = hashes(finished)
    code, out, err = run_main(TINY + [f"{key}={v}", f"hydra.run.dir={finished}"])  # a new run into an existing one
    check_outcome("settings", code, out, err)
    assert code == 2 and hashes(finished) == before, err[-2000:]
    if "holds a finished run" in err and _cheap(key, v):  # accepted at start: run it for real, in a new folder
        with tempfile.TemporaryDirectory() as tmp:
            check_outcome("settings", *run_main(TINY + ["rounds=2", f"{key}={v}", f"hydra.run.dir={tmp}/run"]))


def prop_leaf(spec) -> None:
    _, damage, frac = spec
    with tempfile.TemporaryDirectory() as tmp:
        write_leaf(Path(tmp) / "leaf", damage, frac)
        check_outcome("leaf", *run_main(LEAF + [f"dataset.root={tmp}/leaf", f"dataset.cache_dir={tmp}/cache",
                                                f"hydra.run.dir={tmp}/run"]))


def prop_h5(spec) -> None:
    _, damage, frac = spec
    with tempfile.TemporaryDirectory() as tmp:
        write_h5(Path(tmp) / "emnist", damage, frac)
        check_outcome("h5", *run_main(EMNIST + [f"dataset.root={tmp}/emnist", f"dataset.cache_dir={tmp}/cache",
                                                f"hydra.run.dir={tmp}/run"]))


def prop_resume(finished: Path, target: str, frac: float, junk: bytes) -> None:
    """A resume of a run whose metrics.csv or checkpoint was cut at `frac` and followed by `junk`."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(finished, run)
        path = run / ("metrics.csv" if target == "metrics" else "checkpoints/last.ckpt")
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * frac)] + junk)
        code, out, err = run_main(TINY + ["rounds=5", "resume=true", f"hydra.run.dir={run}"])
        check_outcome("resume", code, out, err)
        if code == 0:  # metrics.csv repaired: every row whole, rounds increasing
            with open(run / "metrics.csv", newline="") as f:
                rows = list(csv.DictReader(f))
            rounds = [int(float(r["round"])) for r in rows]
            assert rounds == sorted(set(rounds)) and rounds[-1] == 5 and all(None not in r.values() for r in rows)
            assert json.loads((run / "summary.json").read_text())["rounds"] == 5


SETTING = dict(key=st.sampled_from(KEYS), value=NUMBERS)
RESUME = dict(target=st.sampled_from(["metrics", "checkpoint"]), frac=st.floats(0, 1), junk=st.binary(max_size=40))


@pytest.mark.slow  # many generated configs
@FAST
@given(**SETTING)
def test_generated_settings(finished, key, value):
    prop_setting(finished, key, value)


@pytest.mark.slow  # many generated files
@FAST
@given(spec=leaf_damage())
def test_generated_damaged_leaf_json(spec):
    prop_leaf(spec)


@FAST
@given(spec=h5_damage())
def test_generated_damaged_h5(spec):
    prop_h5(spec)


@settings(FAST, max_examples=1)
@given(**RESUME)
def test_generated_damaged_state_on_resume(finished, target, frac, junk):
    prop_resume(finished, target, frac, junk)


@pytest.mark.slow
@SOAK
@given(**SETTING)
def test_soak_settings(finished, key, value):
    prop_setting(finished, key, value)


@pytest.mark.slow
@SOAK
@given(spec=leaf_damage())
def test_soak_leaf_json(spec):
    prop_leaf(spec)


@pytest.mark.slow
@SOAK
@given(spec=h5_damage())
def test_soak_h5(spec):
    prop_h5(spec)


@pytest.mark.slow
@settings(SOAK, max_examples=max(1, SOAK.max_examples // 4))
@given(**RESUME)
def test_soak_state_on_resume(finished, target, frac, junk):
    prop_resume(finished, target, frac, junk)


def test_zz_report_cases_tried(request):
    """Prints how many generated cases each property ran (pytest -s shows it)."""
    print(f"\ngenerated cases run: {TRIED}")
