"""The `sweep` node of the config: what a sweep definition may say, checked once.

The node is untyped in the schema (`sweep: Optional[Any]`) because its search
space is free-form; this dataclass gives it defaults and one-line errors.
The sweeper fills `study`, `storage` and `trial` for every job it launches, so
a trial process can find its Optuna trial (for pruning) on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from pfl.config.errors import ConfigError, check, is_int, is_number

DIRECTIONS = ("maximize", "minimize")


@dataclass
class SweepSettings:
    name: str  # study name (and W&B group)
    objectives: list[str]  # metric names (heldout/pers_acc_5) or dotted paths into summary.json (rounds_to_target.initial)
    directions: Any = field(default_factory=lambda: ["maximize"])  # a list, or one string: maximize | minimize
    n_trials: int = 20  # finished (complete, pruned or failed) trials per study, over all workers
    n_jobs: int = 1  # trials launched together (run in parallel by a parallel launcher)
    params: dict[str, Any] = field(default_factory=dict)  # key -> Hydra sweep syntax, e.g. "interval(0.001, 0.1)"
    grid: dict[str, list] = field(default_factory=dict)  # key -> values: one study per combination
    sampler: Optional[dict] = None  # {_target_: optuna.samplers.TPESampler, seed: 0}; null: TPE seeded by `seed`
    pruner: Optional[dict] = None  # {_target_: optuna.pruners.MedianPruner, ...}; null: no pruning
    report: Optional[str] = None  # evaluation metric reported for pruning, e.g. heldout/pers_acc_5
    storage: Optional[str] = None  # RDB URL; null: sqlite file optuna.db in the sweep directory
    heartbeat_s: float = 30.0  # a worker stamps its running trials this often
    stale_after_s: float = 600.0  # a running trial without a stamp for this long is failed and retried
    # filled by the sweeper for each trial job
    study: Optional[str] = None
    trial: Optional[int] = None

    def __post_init__(self):
        if isinstance(self.objectives, str):
            self.objectives = [self.objectives]
        if isinstance(self.directions, str):  # sweep.directions=maximize, hydra.sweeper.direction=maximize
            self.directions = [self.directions] * (len(self.objectives) if isinstance(self.objectives, list) else 1)
        if isinstance(self.directions, (list, tuple)):
            self.directions = [str(d).lower().rsplit(".", 1)[-1] for d in self.directions]  # Direction.maximize
        check(isinstance(self.name, str) and self.name != "", "sweep.name", self.name, "a non-empty study name")
        check(isinstance(self.objectives, list) and len(self.objectives) >= 1 and
              all(isinstance(o, str) for o in self.objectives), "sweep.objectives", self.objectives,
              "a list of dotted paths into summary.json, e.g. [personalized_accuracy.5]")
        check(isinstance(self.directions, list) and len(self.directions) == len(self.objectives) and
              all(d in DIRECTIONS for d in self.directions), "sweep.directions", self.directions,
              f"one of maximize/minimize per objective ({len(self.objectives)})")
        check(is_int(self.n_trials) and self.n_trials >= 1, "sweep.n_trials", self.n_trials, "an integer >= 1")
        check(is_int(self.n_jobs) and self.n_jobs >= 1, "sweep.n_jobs", self.n_jobs, "an integer >= 1")
        check(isinstance(self.params, dict), "sweep.params", self.params, "a mapping key -> sweep, e.g. {client_opt.lr: 'interval(0.001, 0.1)'}")
        check(isinstance(self.grid, dict) and all(isinstance(v, list) and v for v in self.grid.values()),
              "sweep.grid", self.grid, "a mapping key -> non-empty list of values")
        for name in ("sampler", "pruner"):
            v = getattr(self, name)
            check(v is None or (isinstance(v, dict) and "_target_" in v), f"sweep.{name}", v,
                  "null or {_target_: optuna.%ss.<Class>, ...}" % name)
        if self.pruner is not None:
            check(len(self.objectives) == 1, "sweep.pruner", self.pruner["_target_"],
                  "null for a multi-objective study (Optuna prunes single-objective studies only)")
            check(isinstance(self.report, str), "sweep.report", self.report,
                  "the evaluation metric to report for pruning, e.g. heldout/pers_acc_5")
        check(is_number(self.heartbeat_s) and self.heartbeat_s > 0, "sweep.heartbeat_s", self.heartbeat_s, "a number > 0")
        check(is_number(self.stale_after_s) and self.stale_after_s > self.heartbeat_s, "sweep.stale_after_s",
              self.stale_after_s, f"a number > sweep.heartbeat_s ({self.heartbeat_s})")

    @classmethod
    def from_cfg(cls, node: DictConfig | dict | None) -> "SweepSettings":
        if node is None:
            raise ConfigError("sweep", None, "a sweep definition: python -m pfl -m +sweep=NAME (see sweeps/)")
        data = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        check(not unknown, f"sweep.{unknown[0] if unknown else ''}", data.get(unknown[0]) if unknown else None,
              "a sweep setting (" + ", ".join(sorted(known)) + ")")
        for key in ("name", "objectives"):
            check(key in data, f"sweep.{key}", None, "set in the sweep definition")
        return cls(**data)
