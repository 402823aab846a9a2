"""Typed top-level configuration and start-up validation.

The schema (registered in Hydra's ConfigStore as `schema`, first in
conf/config.yaml's defaults) types every top-level key, so a misspelt key or a
value of the wrong type fails while the config is composed. `validate` checks
value ranges that types cannot express. Group options (algorithm, model, ...)
are validated by the classes they instantiate (`pfl.config_errors.check`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig

from pfl.config_errors import ConfigError, check, is_int, is_number
from pfl.sweep.settings import SweepSettings

from pfl.execution import BACKENDS  # noqa: E402 - defined once, beside the backends


@dataclass
class PersonalizationConfig:
    epochs: list[int] = field(default_factory=lambda: [1, 5])
    curve_epochs: int = 10
    heldout_clients: Optional[int] = None
    train_clients: int = 50
    client_opt: Optional[Any] = None
    target_accuracy: float = 0.8
    local_baseline: bool = False
    local_epochs: int = 200
    local_lr: float = 0.005
    local_cache: bool = False


@dataclass
class EngineConfig:
    backend: str = "auto"
    chunk_size: Optional[int] = None
    eval_chunk_size: Optional[int] = 64


@dataclass
class TrainerConfig:
    devices: Any = 1  # processes per node (Lightning's name); > 1: each rank trains its share of the cohort
    num_nodes: int = 1
    strategy: Any = "auto"  # auto/ddp: pfl.engine.distributed.RoundDDPStrategy when several processes run


@dataclass
class Config:
    dataset: Any = MISSING
    model: Any = MISSING
    algorithm: Any = MISSING
    server_opt: Any = MISSING
    client_opt: Any = MISSING
    logger: Any = MISSING
    seed: int = 0
    rounds: int = 100
    clients_per_round: int = 10
    zeta: float = 1.0
    eval_every: int = 25
    checkpoint_every: int = 10
    resume: bool = False
    init_from: Optional[str] = None
    device: str = "auto"
    stages: Optional[Any] = None
    personalization: PersonalizationConfig = field(default_factory=PersonalizationConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    sweep: Optional[SweepSettings] = None  # an Optuna sweep (python -m pfl -m +sweep=NAME; pfl.sweep.settings)


def register() -> None:
    ConfigStore.instance().store(name="schema", node=Config)


def validate(cfg: DictConfig) -> None:
    """Range checks on the composed config (types were checked by the schema)."""
    check(is_number(cfg.zeta) and 0.0 <= cfg.zeta <= 1.0, "zeta", cfg.zeta, "a number in [0, 1]")
    check(cfg.rounds >= 1, "rounds", cfg.rounds, "an integer >= 1")
    check(cfg.clients_per_round >= 1, "clients_per_round", cfg.clients_per_round, "an integer >= 1")
    check(cfg.eval_every >= 1, "eval_every", cfg.eval_every, "an integer >= 1")
    check(cfg.checkpoint_every >= 0, "checkpoint_every", cfg.checkpoint_every, "an integer >= 0 (0: only at the end)")
    check(cfg.engine.backend in BACKENDS, "engine.backend", cfg.engine.backend, "one of " + ", ".join(BACKENDS))
    dev = str(cfg.device)
    check(dev in ("auto", "cpu", "cuda", "mps") or dev.startswith("cuda:"), "device", dev, "auto, cpu, cuda, cuda:N or mps")
    p = cfg.personalization
    ok = isinstance(p.epochs, (list, ListConfig)) and all(is_int(k) and k >= 1 for k in p.epochs)
    check(ok, "personalization.epochs", list(p.epochs) if ok or isinstance(p.epochs, ListConfig) else p.epochs,
          "a list of integers >= 1, e.g. [1,5]")
    check(p.curve_epochs >= 0, "personalization.curve_epochs", p.curve_epochs, "an integer >= 0")
    check(0.0 < p.target_accuracy <= 1.0, "personalization.target_accuracy", p.target_accuracy, "a number in (0, 1]")
    check(p.train_clients >= 0, "personalization.train_clients", p.train_clients, "an integer >= 0")
    check(p.local_epochs >= 1, "personalization.local_epochs", p.local_epochs, "an integer >= 1")
    check(p.local_lr > 0, "personalization.local_lr", p.local_lr, "a number > 0")
    for key in ("server_opt",):
        opt = cfg[key]
        if "lr" in opt:
            check(is_number(opt.lr) and opt.lr > 0, f"{key}.lr", opt.lr, "a number > 0")
        if "momentum" in opt:
            check(is_number(opt.momentum) and 0 <= opt.momentum < 1, f"{key}.momentum", opt.momentum, "a number in [0, 1)")
    if cfg.init_from is not None:
        from pathlib import Path

        check(Path(cfg.init_from).exists(), "init_from", cfg.init_from,
              "null or an existing run directory / checkpoint file to start from")
    if cfg.stages is not None:
        check(isinstance(cfg.stages, (list, ListConfig)) and len(cfg.stages) >= 1, "stages", cfg.stages,
              "null or a list of {name, algorithm, server_opt, rounds}")
        for i, s in enumerate(cfg.stages):
            check("rounds" in s and is_int(s.rounds) and s.rounds >= 1, f"stages[{i}].rounds", s.get("rounds"), "an integer >= 1")


def validate_population(cfg: DictConfig, num_train: int, num_heldout: int) -> None:
    check(cfg.clients_per_round <= num_train, "clients_per_round", cfg.clients_per_round,
          f"at most the training population of {cfg.dataset.name} ({num_train} clients)")


__all__ = ["Config", "ConfigError", "register", "validate", "validate_population"]
