"""A checkpoint written on CUDA resumes on the CPU, and one written on the CPU resumes on CUDA.

A run is interrupted after round 3 (its last checkpoint: round 2 of 4) on one device and resumed
with `resume=true device=<the other>`; it must end where an uninterrupted run on the second device
ends: the global model within 1e-4 (the two devices round differently), the same rounds and rows.
FedAvg with server momentum (a server optimizer state) and SCAFFOLD (an algorithm server state and
per-client state) cover every kind of state a checkpoint holds."""

import pytest
import torch

from tests.gpu.common import CUDA, DEVICE, accuracies, max_difference, numbers, params, run
from tests.helpers.runs import crash_at

pytestmark = CUDA
SIZE = {"rounds": 4, "eval_every": 2, "checkpoint_every": 2}
ALGORITHMS = {"fedavg_momentum": ["algorithm=fedavg", "server_opt=sgdm"], "scaffold": ["algorithm=scaffold"]}


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
@pytest.mark.parametrize("first, then", [(DEVICE, "cpu"), ("cpu", DEVICE)], ids=["cuda_to_cpu", "cpu_to_cuda"])
def test_checkpoint_resumes_on_the_other_device(algorithm, first, then, tmp_path):
    over, resumed_dir = ALGORITHMS[algorithm], tmp_path / "resumed"
    with crash_at(3), pytest.raises(BaseException, match="simulated crash|1"):
        run(resumed_dir, *over, f"device={first}", size=SIZE)
    ckpt = torch.load(resumed_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert int(ckpt["state_dict"]["round"]) == 2
    resumed = run(resumed_dir, *over, f"device={then}", "resume=true", size=SIZE)
    full = run(tmp_path / "full", *over, f"device={then}", size=SIZE)
    assert resumed["device"].startswith(then) and resumed["rounds"] == full["rounds"] == 4
    assert max_difference(params(resumed_dir), params(tmp_path / "full")) < 1e-4
    assert accuracies(resumed) == pytest.approx(accuracies(full), abs=0.05)
    a, b = numbers(resumed_dir), numbers(tmp_path / "full")
    assert [r["round"] for r in a] == [r["round"] for r in b] == [1.0, 2.0, 3.0, 4.0]
    assert [r["train/loss"] for r in a] == pytest.approx([r["train/loss"] for r in b], rel=1e-4, abs=1e-4)
