"""Configuration: from a composed Hydra config to one built, typed `Experiment`.

The lowest modules are plain declarations that every layer may use; the rest
sits on top of everything else (it builds the objects the lower layers define):

- errors.py:    one-line `ConfigError` and friends (no imports from pfl)
- settings.py:  `setting(default, rule)`: a class's settings declared once (errors.py only)
- resources.py: where conf/ and sweeps/ are
- sweep.py:     the `sweep` node's settings (pfl.sweep runs them)
- schema.py:    typed schemas of the top level and of every group option, `register`, `validate`, `build`
- experiment.py: `build_experiment(cfg, run_dir)`: the frozen `pfl.engine.experiment.Experiment` a run fits
- identity.py:  run identity read from the config and Hydra (names, swept keys, job type)
- hooks.py:     callbacks other parts of pfl attach to a run (a sweep's pruner)

Importing a declaration module (`pfl.config.settings`) loads neither Hydra nor
the schemas: the names below are loaded on first use.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "CONF_DIR": "resources", "SWEEPS_DIR": "resources", "ConfigError": "errors",
    "Config": "schema", "algorithm_name": "schema", "build": "schema", "logger_nodes": "schema",
    "option_target": "schema", "options": "schema", "register": "schema", "schema_targets": "schema",
    "stage_names": "schema", "trainer_settings": "schema", "validate": "schema", "validate_population": "schema",
    "build_experiment": "experiment",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"pfl.config.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'pfl.config' has no attribute {name!r}")


__all__ = sorted(_LAZY)
