"""`device=auto trainer.devices=1` on a GPU machine (Lightning's `gpu` accelerator, one device) is the
same run as `device=cuda`: the same accelerator, root device and parameter placement, the same results."""

import pytest
import pytorch_lightning as pl

from tests.gpu.common import CUDA, DEVICE, accuracies, hook, max_difference, numbers, params, run, same_rows

pytestmark = CUDA


class Placement(pl.Callback):
    def __init__(self):
        self.seen = []

    def on_train_start(self, trainer, module):
        self.seen.append((type(trainer.accelerator).__name__, trainer.strategy.root_device.type,
                          trainer.num_devices, sorted({p.device.type for p in module.parameters()})))


def test_devices_1_with_the_gpu_accelerator_equals_device_cuda(tmp_path):
    base = ["algorithm=fedavg", "engine.backend=vmap"]
    with hook("placement", Placement()) as seen:
        explicit = run(tmp_path / "explicit", *base, f"device={DEVICE}")
        chosen = run(tmp_path / "chosen", *base, "device=auto", "trainer.devices=1")
    accelerator = "CUDAAccelerator" if DEVICE == "cuda" else "CPUAccelerator"
    assert seen.seen == [(accelerator, DEVICE, 1, [DEVICE])] * 2
    assert explicit["device"] == chosen["device"]
    assert accuracies(explicit) == pytest.approx(accuracies(chosen), rel=1e-6, abs=1e-6)
    same_rows(numbers(tmp_path / "explicit"), numbers(tmp_path / "chosen"), 1e-6)
    assert max_difference(params(tmp_path / "explicit"), params(tmp_path / "chosen")) < 1e-6
