"""vmap == sequential on CUDA for every option of conf/algorithm/ (the contract suite's glob and its
known-bug marks, tests.algorithms.test_contract), on the tiny synthetic run.

Tolerance 1e-4 (relative and absolute) on every accuracy, curve point and per-round metric: on a GPU
the batched and the per-client kernels sum in different orders (the CPU contract holds 1e-5)."""

import pytest

from tests.algorithms.test_contract import SETTINGS, cases
from tests.gpu.common import CUDA, DEVICE, accuracies, numbers, run, same_rows

pytestmark = CUDA
TOL = 1e-4


@pytest.mark.parametrize("algorithm", cases("vmap"))
def test_vmap_equals_sequential_on_cuda(algorithm, tmp_path):
    extra = [f"algorithm={algorithm}", *SETTINGS.get(algorithm, {}).get("overrides", []), f"device={DEVICE}"]
    out = {b: run(tmp_path / b, *extra, f"engine.backend={b}", size={"checkpoint_every": 0})
           for b in ("vmap", "sequential")}
    assert out["vmap"]["backend"] == "vmap" and out["sequential"]["backend"] == "sequential"
    assert out["vmap"]["device"].startswith(DEVICE)
    assert accuracies(out["vmap"]) == pytest.approx(accuracies(out["sequential"]), rel=TOL, abs=TOL)
    assert out["vmap"]["bytes"] == out["sequential"]["bytes"]
    same_rows(numbers(tmp_path / "vmap"), numbers(tmp_path / "sequential"), TOL)
