"""What the CUDA subset shares: the device, the marks, a tiny run and its results.

Every test module here sets `pytestmark = CUDA`: marked `cuda` (`pytest -m cuda tests/gpu`) and skipped
without a CUDA GPU. `PFL_CUDA_TESTS_ON_CPU=1` runs the same tests with `DEVICE = "cpu"` instead: a check
of the tests' own code on a machine without a GPU (the cross-device cases then compare the CPU with itself).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
import torch

from pfl.run import load_global_params, train
from tests.helpers import compose_cfg, tiny
from tests.helpers.runs import metrics_rows

ON_CPU = os.environ.get("PFL_CUDA_TESTS_ON_CPU") == "1"
DEVICE = "cpu" if ON_CPU else "cuda"
CUDA = [pytest.mark.cuda,
        pytest.mark.skipif(not ON_CPU and not torch.cuda.is_available(),
                           reason="needs a CUDA GPU (PFL_CUDA_TESTS_ON_CPU=1 runs these tests on the CPU)")]

# a tiny run: two rounds of four clients, one evaluation at the end, a checkpoint every round
SMALL = {"rounds": 2, "eval_every": 2, "checkpoint_every": 1, "personalization.heldout_clients": 4,
         "personalization.train_clients": 2}


def run(run_dir: Path, *overrides: str, size: dict | None = None) -> dict:
    """`pfl.run.train` on the tiny config (SMALL unless `size`) with `overrides` last; returns the summary."""
    return train(compose_cfg([*tiny({**SMALL, **(size or {})}), *overrides], tiny=False), run_dir)


def numbers(run_dir: Path) -> list[dict]:
    """metrics.csv as numbers, without the clock readings (time/...) and the empty cells (a training row
    has no evaluation columns)."""
    return [{k: float(v) for k, v in r.items() if "time" not in k and v not in ("", None)}
            for r in metrics_rows(run_dir)]


def accuracies(summary: dict) -> dict[str, float]:
    """The summary's held-out and training-client accuracies and curves as one flat {name: value}."""
    out = {}
    for pop, part, curve in (("heldout", summary, "personalization_curve"),
                             ("train", summary.get("train_clients") or {}, "curve")):
        out[f"{pop}/initial"] = part.get("initial_accuracy")
        out.update({f"{pop}/pers_{k}": v for k, v in (part.get("personalized_accuracy") or {}).items()})
        out.update({f"{pop}/curve_{i}": v for i, v in enumerate(part.get(curve) or [])})
    return out


def same_rows(a: list[dict], b: list[dict], tol: float) -> None:
    """Two runs logged the same metrics, round by round, to `tol` (relative and absolute)."""
    assert [r.keys() for r in a] == [r.keys() for r in b]
    for x, y in zip(a, b):
        assert x == pytest.approx(y, rel=tol, abs=tol), x.get("round")


def params(run_dir: Path) -> dict[str, torch.Tensor]:
    """The final global model of a run (on the CPU)."""
    return load_global_params(run_dir)


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@contextlib.contextmanager
def hook(name: str, callback):
    """A Lightning callback attached to every run started inside (pfl.config.hooks)."""
    from pfl.config import hooks

    hooks.register(name, lambda cfg: [callback])
    try:
        yield callback
    finally:
        hooks._FACTORIES.pop(name)
