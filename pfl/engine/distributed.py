"""Several processes, devices or nodes through Lightning's DDP strategy.

Lightning launches the processes (one per device, `trainer.devices` ×
`trainer.num_nodes`; torchrun and SLURM environments are detected), sets up
torch.distributed (gloo on CPU, NCCL on GPU) and the ranks. What it would
also do, wrap the module in DistributedDataParallel to all-reduce gradients
after `backward`, does not apply to a round: there is no backward through the
module. Instead every rank computes its block of the cohort and of the
evaluation clients and all-gathers the results (`pfl.execution.Shard`), and
then applies the same aggregate with the same server optimizer, so the
server's parameters stay identical on every rank by construction.
"""

from __future__ import annotations

import torch
from pytorch_lightning.strategies import DDPStrategy


class RoundDDPStrategy(DDPStrategy):
    """Lightning's DDP strategy without the DistributedDataParallel wrapper."""

    strategy_name = "pfl_ddp"

    def configure_ddp(self) -> None:
        # no gradient hooks; start from rank 0's parameters and buffers (identical by seeding, made certain here)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            with torch.no_grad():
                for t in list(self.model.parameters()) + list(self.model.buffers()):
                    torch.distributed.broadcast(t.data, src=0)


def make_strategy(strategy, devices, num_nodes: int, accelerator: str):
    """`trainer.strategy`: auto/ddp become RoundDDPStrategy when more than one process runs."""
    many = num_nodes > 1 or (isinstance(devices, int) and devices > 1) or (isinstance(devices, (list, tuple)) and len(devices) > 1)
    if strategy in ("auto", "ddp", None) and many:
        return RoundDDPStrategy(process_group_backend="nccl" if accelerator in ("gpu", "cuda") else "gloo")
    return strategy
