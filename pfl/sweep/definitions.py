"""Sweep definitions: each sweeps/NAME.yaml becomes the option NAME of the config group `sweep`.

The files live at the project's top level (sweeps/, beside conf/; inside the
package once installed, see pfl.config.resources), not in conf/, so they are registered in Hydra's ConfigStore (package _global_: a
definition may set any key, e.g. `hydra.sweep.dir` or a default `algorithm`).
Select one with `python -m pfl -m +sweep=NAME`.
"""

from __future__ import annotations

from pfl.config.resources import SWEEPS_DIR


def names() -> list[str]:
    return sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml")) if SWEEPS_DIR.is_dir() else []


def register() -> None:
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from pfl.config.sweep import SweepSettings

    cs = ConfigStore.instance()
    for name in names():
        node = OmegaConf.load(SWEEPS_DIR / f"{name}.yaml")
        if "sweep" in node:  # typed, with every setting's default: `sweep.n_jobs=8` works, `sweep.n_trails=3` fails
            node.sweep = OmegaConf.merge(OmegaConf.structured(SweepSettings), node.sweep)
        cs.store(group="sweep", name=name, node=node, package="_global_", provider="pfl")
