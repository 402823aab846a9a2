"""Extra Lightning callbacks that other parts of pfl attach to a run.

Registered by name so that building a run need not import them: a sweep
registers its pruning callback factory here (pfl.sweep.pruning); each factory
receives the composed config and returns a list of callbacks (empty when it
does not apply). `pfl.config.experiment` calls them once, while it builds.
"""

from __future__ import annotations

from typing import Callable

from omegaconf import DictConfig

_FACTORIES: dict[str, Callable[[DictConfig], list]] = {}


def register(name: str, factory: Callable[[DictConfig], list]) -> None:
    _FACTORIES[name] = factory


def callbacks_for(cfg: DictConfig) -> list:
    """The registered factories' callbacks, then those the config lists by `_target_` (`callbacks:`)."""
    from pfl.config.schema import build

    out = []
    for factory in _FACTORIES.values():
        out += factory(cfg)
    out += [build(node, path=f"callbacks.{i}") for i, node in enumerate(cfg.get("callbacks") or [])]
    return out
