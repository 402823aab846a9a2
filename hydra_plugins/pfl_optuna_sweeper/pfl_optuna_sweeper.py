"""Hydra sweeper `pfl_optuna`: Optuna trials as Hydra jobs (any launcher).

Hydra imports this module while scanning plugins, so it stays light: it
registers the sweeper's config and the sweep definitions (sweeps/*.yaml as
the group `sweep`) and imports Optuna only when a sweep starts. The sweep's
settings live in the job config under `sweep` (see pfl.sweep.settings), not
under hydra.sweeper, because the trial jobs need them too (pruning).
`hydra.sweeper.params` (where experiments keep grids) join the search space.
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class PflOptunaSweeperConf:
    _target_: str = "hydra_plugins.pfl_optuna_sweeper.pfl_optuna_sweeper.PflOptunaSweeper"
    # Hydra's usual place for sweep values (experiments put their grids here): they join the
    # search space, below sweep.params and the command line for the same key
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="pfl_optuna", node=PflOptunaSweeperConf, provider="pfl")

try:  # the sweep definitions, when pfl and its sweeps/ folder are present
    from pfl.sweep.definitions import register as _register_sweeps

    _register_sweeps()
except ImportError:  # pragma: no cover
    pass


class PflOptunaSweeper(Sweeper):
    def __init__(self, params: Optional[Dict[str, str]] = None) -> None:
        self.params = dict(params or {})
        self.config: Optional[DictConfig] = None
        self.launcher = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        from pfl.sweep.driver import run_sweep

        return run_sweep(self, arguments)
