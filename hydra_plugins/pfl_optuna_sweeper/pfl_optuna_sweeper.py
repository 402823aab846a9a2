"""Hydra sweeper `pfl_optuna`: Optuna trials as Hydra jobs (any launcher).

Hydra imports this module while scanning plugins, so it stays light: it
registers the sweeper's config and the sweep definitions (sweeps/*.yaml as
the group `sweep`) and imports Optuna only when a sweep starts. The sweep's
settings live in the job config under `sweep` (see pfl.config.sweep), not
under hydra.sweeper, because the trial jobs need them too (pruning).
`hydra.sweeper.params` (where experiments keep grids) join the search space.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import MISSING, DictConfig


SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler", "nsgaii": "NSGAIISampler",
            "nsgaiii": "NSGAIIISampler", "qmc": "QMCSampler", "gp": "GPSampler"}


@dataclass
class PflOptunaSweeperConf:
    """hydra-optuna-sweeper's keys (a YAML written for it runs unchanged), then pfl's extras. A key set here
    wins over the same setting under `sweep` (the project's sweep definitions); null: the `sweep` value."""

    _target_: str = "hydra_plugins.pfl_optuna_sweeper.pfl_optuna_sweeper.PflOptunaSweeper"
    defaults: List[Any] = field(default_factory=lambda: [{"sampler": "default"}])
    sampler: Any = MISSING  # {_target_: optuna.samplers.X, seed: ...} or hydra/sweeper/sampler=tpe|random|...; {seed: null}: unset
    direction: Any = None  # maximize | minimize | a list (multi-objective); null: sweep.directions (maximize)
    study_name: Optional[str] = None  # null: sweep.name
    storage: Optional[Any] = None  # an RDB URL; null: sweep.storage (default: sqlite in the sweep directory)
    n_trials: Optional[int] = None
    n_jobs: Optional[int] = None
    # Hydra's usual place for sweep values (experiments put their grids here): they join the
    # search space, below sweep.params and the command line for the same key
    params: Optional[Dict[str, Any]] = None
    custom_search_space: Optional[str] = None  # "module.function": function(cfg, trial) suggests more params
    # pfl's extras (also settable under `sweep`)
    objectives: Optional[List[str]] = None  # metric names or summary.json paths; null: heldout/pers_acc_<max k>
    grid: Optional[Dict[str, Any]] = None  # one study per combination (e.g. per ζ)
    pruner: Any = None
    report: Optional[str] = None  # the evaluation metric reported for pruning


cs = ConfigStore.instance()
cs.store(group="hydra/sweeper", name="pfl_optuna", node=PflOptunaSweeperConf, provider="pfl")
# a YAML written for hydra-optuna-sweeper says `override hydra/sweeper: optuna`: the same sweeper
# (unless hydra-optuna-sweeper itself is installed, whose `optuna` then stays)
try:
    import hydra_plugins.hydra_optuna_sweeper  # noqa: F401
except ImportError:
    cs.store(group="hydra/sweeper", name="optuna", node=PflOptunaSweeperConf, provider="pfl")
# the default: sweep.sampler, else TPE seeded by `seed`; `hydra.sweeper.sampler.seed: 1` alone: TPE seeded 1
cs.store(group="hydra/sweeper/sampler", name="default", node={"seed": None}, provider="pfl")
for _name, _cls in SAMPLERS.items():
    cs.store(group="hydra/sweeper/sampler", name=_name, node={"_target_": f"optuna.samplers.{_cls}", "seed": None},
             provider="pfl")

try:  # the sweep definitions, when pfl and its sweeps/ folder are present
    from pfl.sweep.definitions import register as _register_sweeps

    _register_sweeps()
except ImportError:  # pragma: no cover
    pass


class PflOptunaSweeper(Sweeper):
    def __init__(self, params: Optional[Dict[str, str]] = None, **settings: Any) -> None:
        self.params = dict(params or {})
        self.settings: Dict[str, Any] = {}  # set in setup from the raw config (Hydra instantiated the samplers here)
        self.config: Optional[DictConfig] = None
        self.launcher = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        # hydra-optuna-sweeper's keys and pfl's extras, not instantiated (pfl.sweep.driver.merged_settings)
        self.settings = {k: v for k, v in config.hydra.sweeper.items() if k not in ("_target_", "params")}
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        from pfl.sweep.driver import run_sweep

        return run_sweep(self, arguments)
