"""What a run is, built once before it starts: the typed, frozen input of `pfl.engine.fit`.

`pfl.config.build_experiment(cfg)` makes an `Experiment` from a composed config;
the engine reads only these objects, never the config itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn

from pfl.algorithms.base import Algorithm
from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import FederatedData
from pfl.evaluation.settings import PersonalizationSettings
from pfl.execution import Backend
from pfl.task import Task


@dataclass
class Stage:
    algorithm: Algorithm
    server_opt: Callable  # partial torch optimizer: f(param_groups) -> Optimizer
    rounds: int
    name: str


@dataclass(frozen=True)
class RunInfo:
    """Who the run is: the names summary.json, the loggers and the dashboards show."""

    algorithm: str  # the stages' names joined by "+" ("fedavg", "reptile+fedavg_ft")
    dataset: str
    model: str  # the model's class name
    seed: int
    zeta: float
    clients_per_round: int
    federated: bool = True  # False: a centralized baseline (its own W&B job type)
    config: dict = field(default_factory=dict)  # the resolved config (checkpoints compare it on resume)
    config_yaml: str = ""  # the same, as the run's config.yaml
    sweep_name: Optional[str] = None  # the Optuna sweep this run is a trial of
    sweep_trial: Optional[int] = None
    label: str = ""  # what differs within its multirun or sweep: `afml ζ=0.4 seed=1`
    multirun_group: Optional[str] = None  # a multirun job outside a sweep: the experiment or the grid's name
    output_root: Optional[str] = None  # a multirun's or sweep's folder (hydra.sweep.dir), shared by its jobs

    @property
    def job_type(self) -> str:
        """sweep-trial (a trial of an Optuna sweep), centralized (a non-federated baseline) or train."""
        if self.sweep_trial is not None:
            return "sweep-trial"
        return "train" if self.federated else "centralized"

    def replica(self, r: int) -> "RunInfo":
        """Replica r of `replicas=R` is the run with seed + r."""
        return dataclasses.replace(self, seed=self.seed + r)


@dataclass(frozen=True)
class TrainerPlan:
    """pl.Trainer's arguments that come from the config: where it runs and `trainer.*`."""

    accelerator: str
    devices: Any
    num_nodes: int
    strategy: Any
    settings: dict  # the other pl.Trainer arguments (trainer.*, Lightning's names)
    progress_bar: bool


@dataclass(frozen=True)
class Experiment:
    run: RunInfo
    data: FederatedData
    model: nn.Module
    task: Task
    stages: tuple[Stage, ...]
    local: LocalTrainer  # clients' training in the rounds
    personal: LocalTrainer  # clients' fine-tuning in the evaluation (personalization.client_opt)
    backend: Backend  # its chunk_size resolved (engine.chunk_size=auto)
    eval_chunk_size: Optional[int]
    device: torch.device
    personalization: PersonalizationSettings
    eval_every: int
    checkpoint_every: int
    resume: Any  # True, False or "auto"
    init_from: Optional[str] = None  # a checkpoint file or run directory the server's model starts from
    replicas: Optional[list] = None  # (seed, data, initial parameters) of each replica; None: one run
    local_cache_dir: Optional[str] = None  # where local-only reference accuracies are kept across runs
    loggers: tuple = ()  # factories: f(run, run_dir, resume_round) -> a logger (metrics.csv is always there)
    callbacks: tuple = ()  # extra Lightning callbacks (a sweep's pruner, `callbacks:`)
    trainer: Optional[TrainerPlan] = None
    plots: bool = True
    count_flops: bool = True  # FLOPs of each stage's first round (FlopCounterMode)
    engine: dict = field(default_factory=dict)  # how it runs, for summary.json (chunk sizes auto chose, precision)
