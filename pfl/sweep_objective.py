"""Read a sweep's objective value(s) out of a run's summary."""

from __future__ import annotations


def lookup(summary: dict, path: str):
    """A value by dotted path: 'personalized_accuracy.5', 'train_clients.initial_accuracy'."""
    node = summary
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"the objective '{path}' was never produced by this run (summary.json has no '{part}')")
        node = node[part]
    if not isinstance(node, (int, float)) or isinstance(node, bool):
        raise KeyError(f"the objective '{path}' is not a number in summary.json: {node!r}")
    return float(node)


def read(cfg, summary: dict):
    sweep = cfg.get("sweep") if hasattr(cfg, "get") else None
    if not sweep or not sweep.get("objectives"):
        return None
    values = [lookup(summary, p) for p in sweep.objectives]
    return values[0] if len(values) == 1 else values
