"""trainer.precision=bf16-mixed on CUDA: the run finishes and stays near float32.

Stated tolerance (FedAvg, the tiny synthetic run, 2 rounds): every logged metric within 5e-2
(relative or absolute), every accuracy within 0.1, the final global model within 5e-2 of float32's
in max absolute difference; and bf16 did act (the models differ)."""

import pytest

from tests.gpu.common import CUDA, DEVICE, accuracies, max_difference, numbers, params, run, same_rows

pytestmark = CUDA


def test_bf16_mixed_runs_and_stays_near_float32(tmp_path):
    base = ["algorithm=fedavg", f"device={DEVICE}", "engine.backend=vmap"]
    exact = run(tmp_path / "fp32", *base)
    mixed = run(tmp_path / "bf16", *base, "trainer.precision=bf16-mixed")
    assert mixed["status"] == "completed" and mixed["engine"]["precision"] == "bf16-mixed"
    assert accuracies(mixed) == pytest.approx(accuracies(exact), abs=0.1)
    same_rows(numbers(tmp_path / "bf16"), numbers(tmp_path / "fp32"), 5e-2)
    a, b = params(tmp_path / "fp32"), params(tmp_path / "bf16")
    assert all(v.dtype == a[k].dtype for k, v in b.items())  # parameters stay float32
    assert 0 < max_difference(a, b) < 5e-2
