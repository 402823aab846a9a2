"""Contract suite: every option of conf/algorithm/ keeps the promises of the engine.

The options are found by globbing the config directory when the tests are collected, so a
YAML copied under a new name is checked with no other edit. Each option runs one tiny run
through the public `pfl.run.train` three ways — vectorized, sequential, and vectorized but
interrupted after round 3 (last checkpoint: round 2 of 4) then resumed in the same run
directory — and four checks read the files those runs wrote:

- vmap == sequential: the same accuracies, curves and per-round training metrics (1e-5);
- resume: the resumed run ends with the uninterrupted run's global model, summary and metrics;
- bytes: totals = the sum of the per-round bytes = rounds x cohort x the bytes of one client's
  exchange (the model's parameters each way, `algorithm.model_params` of the final global state,
  plus what SETTINGS declares);
- curve length: max(curve_epochs, epochs, the algorithm's report epochs) + 1 points for the
  held-out and the training clients, consistent with the reported accuracies.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from omegaconf import DictConfig

from pfl.cli import CONF_DIR
from pfl.run import build, load_global_params, train
from tests.helpers import compose_cfg, tiny
from tests.helpers.runs import crash_at, metrics_rows, same_results

ALGORITHMS = sorted(p.stem for p in (Path(CONF_DIR) / "algorithm").glob("*.yaml"))

# Per-option settings; an option without an entry needs none. Keys:
#   overrides: extra command-line overrides (to keep the run tiny or valid on the synthetic data set)
#   exchanges: False for options that send nothing either way (0 bytes)
#   extra_down / extra_up: bytes per client sent beyond the model's parameters
#   xfail: {check: reason} for a known bug (strict: the test fails once the bug is fixed)
SETTINGS: dict[str, dict] = {
    "local": {"overrides": ["algorithm.epochs=3"], "exchanges": False},  # personalizes `epochs` (200) epochs
    "centralized": {"overrides": ["algorithm.epochs=4"], "exchanges": False},  # one round = one epoch
    # the tiny MLP (20 -> 64 -> 10): body 20·64+64 floats = 5376 B, head 64·10+10 floats = 2600 B, model 7976 B
    "scaffold": {"extra_down": 7976, "extra_up": 7976},  # the control variate c down, Δc up
    "fedper": {"extra_down": -2600, "extra_up": -2600},  # the body only: the head stays on the client
    "fedrep": {"extra_down": -2600, "extra_up": -2600},
    "fedbabu": {"extra_down": -2600, "extra_up": -2600},  # the frozen head is never sent
    "lg_fedavg": {"extra_down": -5376, "extra_up": -5376},  # the head only: the body stays on the client
    "feddbe": {"extra_down": 257, "extra_up": 256},  # the consensus z̄ᵍ (64 floats) and its flag; the client's mean
    "fedbn": {"overrides": ["model.batch_norm=true"], "extra_down": -512, "extra_up": -512},  # BN (2·64 floats) local
    "fedas": {"extra_down": -2600, "extra_up": -2600},  # the body only: the head stays on the client
    # GPFL: φ + GCE (10·64 floats) + CoV (2·(64·64 + 3·64) floats), no head: 7976 + 2560 + 34304 - 2600 B
    "gpfl": {"extra_down": 34264, "extra_up": 34264},
    "fedala": {"overrides": ["algorithm.start_epochs=2"]},  # 10 ALA passes per round cost 3x the run's time
    # a small hypernetwork and few inner steps (the defaults, 50 steps and H = 100, take ~4x the time)
    "pfedhn": {"overrides": ["algorithm.local_steps=5", "algorithm.hidden=8", "algorithm.n_hidden=1"]},
    # the body and the client's own head down with the prototypes (+ flags); up the body, the head, prototypes
    # (+ counts) and the statistics h (10 x 64 float32) and V (one float32)
    "fedpac": {"extra_down": 2560 + 10, "extra_up": 2560 + 40 + 2560 + 4, "overrides": ["algorithm.body_epochs=1"]},
    # prototypes instead of the model: 10 classes x 64 features float32 (2560 B), + 10 bool flags down, + 10 float32
    # counts up
    "fedproto": {"extra_down": 2570 - 7976, "extra_up": 2600 - 7976},
    # the CPN (Linear(64, 128) + LayerNorm(128): 8576 floats = 34304 B) both ways; up without the global head's bias
    "fedcp": {"extra_down": 34304, "extra_up": 34304 - 40},
    "afml": {"extra_up": 5376},  # Alg. 1's g_g = ∇τ: two values (mean, σ) per body weight up
}

# the tiny run of tests.helpers, evaluated every round (metrics.csv then has a row per round) on few clients
CONTRACT = {"eval_every": 1, "rounds": 4, "checkpoint_every": 2, "personalization.heldout_clients": 4,
            "personalization.train_clients": 2}
CRASH_AT = 3  # after round 3; the last checkpoint is round 2 = half the run


def cases(check: str) -> list:
    out = []
    for name in ALGORITHMS:
        reason = SETTINGS.get(name, {}).get("xfail", {}).get(check)
        out.append(pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=reason)) if reason else name)
    return out


class Run(NamedTuple):
    cfg: DictConfig
    dir: Path
    summary: dict


def overrides(name: str, backend: str) -> list[str]:
    return [*tiny(CONTRACT), f"algorithm={name}", *SETTINGS.get(name, {}).get("overrides", []),
            f"engine.backend={backend}"]


def run(name: str, backend: str, run_dir: Path, *extra: str) -> Run:
    cfg = compose_cfg([*overrides(name, backend), *extra], tiny=False)
    return Run(cfg, run_dir, train(cfg, run_dir))  # tiny() turns the plots off: no check here reads them


@pytest.fixture(scope="module")
def algorithm(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def runs(algorithm, tmp_path_factory) -> dict[str, Run]:
    root = tmp_path_factory.mktemp(algorithm)
    return {b: run(algorithm, b, root / b) for b in ("vmap", "sequential")}


@pytest.fixture(scope="module")
def resumed(algorithm, tmp_path_factory) -> Run:
    run_dir = tmp_path_factory.mktemp(f"{algorithm}_resumed")
    with crash_at(CRASH_AT), pytest.raises(BaseException, match="simulated crash|1"):
        run(algorithm, "vmap", run_dir)
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert int(ckpt["state_dict"]["round"]) == CRASH_AT - 1
    return run(algorithm, "vmap", run_dir, "resume=true")


def _numbers(rows: list[dict]) -> list[dict]:
    """metrics.csv rows as numbers, without the clock readings (wall_time, eval_time, ...)."""
    return [{k: float(v) if v not in ("", None) else v for k, v in r.items() if "time" not in k} for r in rows]


def _accuracies(s: dict) -> dict[str, float]:
    """The summary's accuracies (held-out and training clients) as one flat {name: value}."""
    out = {}
    for pop, part, curve in (("heldout", s, "personalization_curve"), ("train", s["train_clients"], "curve")):
        out[f"{pop}/initial"] = part.get("initial_accuracy")
        out.update({f"{pop}/personalized_{k}": v for k, v in part.get("personalized_accuracy", {}).items()})
        out.update({f"{pop}/curve_{i}": v for i, v in enumerate(part.get(curve) or [])})
    return out


def test_the_registry_is_discovered():
    assert "fedavg" in ALGORITHMS and len(ALGORITHMS) >= 2, ALGORITHMS
    assert set(SETTINGS) <= set(ALGORITHMS), f"SETTINGS names options that do not exist: {set(SETTINGS) - set(ALGORITHMS)}"


@pytest.mark.parametrize("algorithm", cases("vmap"), indirect=True)
def test_vmap_equals_sequential(runs):
    a, b = runs["vmap"], runs["sequential"]
    assert a.summary["backend"] == "vmap" and b.summary["backend"] == "sequential"
    assert _accuracies(a.summary) == pytest.approx(_accuracies(b.summary), rel=1e-5, abs=1e-5)
    assert a.summary["bytes"] == b.summary["bytes"]
    ra, rb = _numbers(metrics_rows(a.dir)), _numbers(metrics_rows(b.dir))
    assert [r.keys() for r in ra] == [r.keys() for r in rb]
    for x, y in zip(ra, rb):  # training loss (and every other logged metric) round by round
        assert x == pytest.approx(y, rel=1e-5, abs=1e-5), x["round"]


@pytest.mark.parametrize("algorithm", cases("resume"), indirect=True)
def test_resume_equals_uninterrupted(runs, resumed):
    full = runs["vmap"]
    same_results(full.summary, resumed.summary)
    a, b = load_global_params(full.dir), load_global_params(resumed.dir)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _numbers(metrics_rows(full.dir)) == _numbers(metrics_rows(resumed.dir))


@pytest.mark.parametrize("algorithm", cases("bytes"), indirect=True)
def test_bytes_accounting(algorithm, runs):
    r = runs["vmap"]
    s, rows = r.summary, _numbers(metrics_rows(r.dir))
    rounds = s["rounds"]
    assert [int(row["round"]) for row in rows] == list(range(1, rounds + 1))  # eval_every=1: a row per round
    settings = SETTINGS.get(algorithm, {})
    model = build(r.cfg.algorithm).model_params(load_global_params(r.dir))  # AFML: θu and the head, not ρ
    model_bytes = sum(v.numel() * v.element_size() for v in model.values())
    if settings.get("exchanges", True):
        per_client = {"down": model_bytes + settings.get("extra_down", 0), "up": model_bytes + settings.get("extra_up", 0)}
    else:
        per_client = {"down": 0, "up": 0}
    for way in ("down", "up"):
        per_round = [int(row[f"bytes/{way}"]) for row in rows]
        assert per_round == [r.cfg.clients_per_round * per_client[way]] * rounds, way
        assert s["bytes"][f"{way}_total"] == sum(per_round), way
        assert [int(row[f"bytes/{way}_total"]) for row in rows] == [sum(per_round[:i + 1]) for i in range(rounds)]
        assert s["bytes"][f"{way}_per_round"] == pytest.approx(sum(per_round) / rounds), way


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
