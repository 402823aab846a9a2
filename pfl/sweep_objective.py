"""Read a sweep's objective value(s) out of a run's summary."""

from __future__ import annotations


class MissingObjective(KeyError):
    """The named objective is not in summary.json: a misspelt name, not a bad trial (the sweep stops)."""

    def __str__(self) -> str:
        return str(self.args[0])


def lookup(summary: dict, path: str):
    """A value by dotted path: 'personalized_accuracy.5', 'train_clients.initial_accuracy'."""
    node = summary
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            have = ", ".join(node) if isinstance(node, dict) else type(node).__name__
            raise MissingObjective(f"the objective '{path}' was never produced by this run "
                                   f"(summary.json has no '{part}'; there: {have})")
        node = node[part]
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
