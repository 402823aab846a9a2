"""Read a sweep's objective value(s) out of a run's summary."""

from __future__ import annotations


class MissingObjective(KeyError):
    """The named objective is not in summary.json: a misspelt name, not a bad trial (the sweep stops)."""

    def __str__(self) -> str:
        return str(self.args[0])


def lookup(summary: dict, path: str):
    """A value by metric name (`heldout/pers_acc_5`: the last evaluation's, pfl.engine.names), or by dotted
    path into summary.json ('personalized_accuracy.5', 'rounds_to_target.initial')."""
    if "/" in path:
        final = summary.get("final") or {}
        if path not in final:
            have = ", ".join(k for k in final if "/" in k)
            raise MissingObjective(f"the objective '{path}' was never produced by this run (its last evaluation "
                                   f"has no '{path}'; there: {have})")
        return _number(path, final[path])
    node = summary
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            have = ", ".join(node) if isinstance(node, dict) else type(node).__name__
            raise MissingObjective(f"the objective '{path}' was never produced by this run "
                                   f"(summary.json has no '{part}'; there: {have})")
        node = node[part]
    return _number(path, node)


def _number(path: str, node):
    if node is None:
        raise MissingObjective(f"the objective '{path}' was never produced by this run (it is null in summary.json)")
    if not isinstance(node, (int, float)) or isinstance(node, bool):
        raise MissingObjective(f"the objective '{path}' is not a number in summary.json: {node!r}")
    return float(node)


def read(cfg, summary: dict):
    sweep = cfg.get("sweep") if hasattr(cfg, "get") else None
    if not sweep or not sweep.get("objectives"):
        return None
    values = [lookup(summary, p) for p in sweep.objectives]
    return values[0] if len(values) == 1 else values


# what the config check refuses before the first trial lives with the config (pfl.config.objectives)
from pfl.config.objectives import FAMILIES, check_objectives, never_produced  # noqa: E402,F401
