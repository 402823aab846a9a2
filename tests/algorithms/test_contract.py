"""Contract suite: every option of conf/algorithm/ keeps the promises of the engine.

The options are found by globbing the config directory when the tests are collected, so a
YAML copied under a new name is checked with no other edit. Each option runs one tiny run
through the public `pfl.run.train` three ways — vectorized, sequential, and vectorized but
interrupted after round 3 (last checkpoint: round 2 of 4) then resumed in the same run
directory — and four checks read the files those runs wrote (tests/helpers/contract.py):

- vmap == sequential: the same accuracies, curves and per-round training metrics (1e-5);
- resume: the resumed run ends with the uninterrupted run's global model, summary and metrics;
- bytes: per round, clients x the bytes of one client's exchange, derived from the algorithm's own
  hooks called for one client outside the engine (what it receives, its `delta` and `extra`, or its
  own `bytes_exchanged` where it overrides it); totals = the sums of the rounds;
- curve length: max(curve_epochs, epochs, the algorithm's report epochs) + 1 points for the
  held-out and the training clients, consistent with the reported accuracies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pfl.algorithms.base import nbytes
from pfl.algorithms.fedavg import FedAvg
from pfl.cli import CONF_DIR
from pfl.run import build
from tests.helpers.contract import (Run, check_bytes, check_resume_equals_uninterrupted,
                                    check_vmap_equals_sequential, contract_run, resumed_run)

ALGORITHMS = sorted(p.stem for p in (Path(CONF_DIR) / "algorithm").glob("*.yaml"))

# Per-option settings; an option without an entry needs none. Keys:
#   overrides: extra command-line overrides (to keep the run tiny or valid on the synthetic data set)
#   xfail: {check: reason} for a known bug (strict: the test fails once the bug is fixed)
SETTINGS: dict[str, dict] = {
    "local": {"overrides": ["algorithm.epochs=3"]},  # personalizes `epochs` (200) epochs
    "centralized": {"overrides": ["algorithm.epochs=4"]},  # one round = one epoch
    "fedbn": {"overrides": ["model.batch_norm=true"]},  # FedBN keeps the batch norm layers local
    "fedala": {"overrides": ["algorithm.start_epochs=2"]},  # 10 ALA passes per round cost 3x the run's time
    # a small hypernetwork and few inner steps (the defaults, 50 steps and H = 100, take ~4x the time)
    "pfedhn": {"overrides": ["algorithm.local_steps=5", "algorithm.hidden=8", "algorithm.n_hidden=1"]},
    "fedpac": {"overrides": ["algorithm.body_epochs=1"]},
}


def cases(check: str) -> list:
    out = []
    for name in ALGORITHMS:
        reason = SETTINGS.get(name, {}).get("xfail", {}).get(check)
        out.append(pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=reason)) if reason else name)
    return out


def overrides(name: str) -> list[str]:
    return SETTINGS.get(name, {}).get("overrides", [])


@pytest.fixture(scope="module")
def algorithm(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def runs(algorithm, tmp_path_factory) -> dict[str, Run]:
    root = tmp_path_factory.mktemp(algorithm)
    return {b: contract_run(algorithm, b, root / b, overrides(algorithm)) for b in ("vmap", "sequential")}


@pytest.fixture(scope="module")
def resumed(algorithm, tmp_path_factory) -> Run:
    return resumed_run(algorithm, tmp_path_factory.mktemp(f"{algorithm}_resumed"), overrides(algorithm))


def test_the_registry_is_discovered():
    assert "fedavg" in ALGORITHMS and len(ALGORITHMS) >= 2, ALGORITHMS
    assert set(SETTINGS) <= set(ALGORITHMS), f"SETTINGS names options that do not exist: {set(SETTINGS) - set(ALGORITHMS)}"


@pytest.mark.parametrize("algorithm", cases("vmap"), indirect=True)
def test_vmap_equals_sequential(runs):
    check_vmap_equals_sequential(runs["vmap"], runs["sequential"])


@pytest.mark.parametrize("algorithm", cases("resume"), indirect=True)
def test_resume_equals_uninterrupted(runs, resumed):
    check_resume_equals_uninterrupted(runs["vmap"], resumed)


@pytest.mark.parametrize("algorithm", cases("bytes"), indirect=True)
def test_bytes_accounting(runs):
    check_bytes(runs["vmap"])


@dataclass
class CountsTheCohort(FedAvg):
    """A wrong `bytes_exchanged`: every client's Δ instead of one client's (the engine passes the cohort's)."""

    def bytes_exchanged(self, sent, updates):
        return nbytes(sent), nbytes(updates.delta)


@dataclass
class SendsMore(FedAvg):
    """FedAvg whose clients also send a tensor the size of their Δ (counted by the default `bytes_exchanged`)."""

    def client_update(self, local, params, data, key, state=None):
        update = super().client_update(local, params, data, key, state)
        return update._replace(extra={"copy": dict(update.delta)})


def test_the_bytes_check_derives_extra_tensors_and_catches_a_wrong_count(tmp_path):
    here = f"{__name__}."
    fedavg = contract_run("fedavg", "vmap", tmp_path / "fedavg", [], "rounds=2")
    more = contract_run("fedavg", "vmap", tmp_path / "more", [], "rounds=2", f"algorithm._target_={here}SendsMore")
    check_bytes(fedavg), check_bytes(more)  # the extra tensor passes with no table
    assert more.summary["bytes"]["up_total"] == 2 * fedavg.summary["bytes"]["up_total"]
    assert more.summary["bytes"]["down_total"] == fedavg.summary["bytes"]["down_total"]
    wrong = contract_run("fedavg", "vmap", tmp_path / "wrong", [], "rounds=2",
                         f"algorithm._target_={here}CountsTheCohort")
    assert wrong.summary["bytes"]["up_total"] == wrong.cfg.clients_per_round * fedavg.summary["bytes"]["up_total"]
    with pytest.raises(AssertionError, match="up"):
        check_bytes(wrong)


@pytest.mark.parametrize("algorithm", cases("curve"), indirect=True)
def test_personalization_curve_length(runs):
    r = runs["vmap"]
    p = r.cfg.personalization
    reported = {*p.epochs, *getattr(build(r.cfg.algorithm), "report_epochs", ())}
    points = max(p.curve_epochs, *reported) + 1
    s = r.summary
    parts = {"heldout": (s["personalization_curve"], s), "train": (s["train_clients"].get("curve"), s["train_clients"])}
    for pop, (curve, part) in parts.items():
        assert curve is not None and len(curve) == points, pop
        assert {str(k) for k in reported} <= set(part["personalized_accuracy"]), pop
        assert part["initial_accuracy"] == curve[0], pop
        for k, acc in part["personalized_accuracy"].items():
            assert acc == curve[int(k)], (pop, k)
