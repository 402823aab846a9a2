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


FAMILIES = ("heldout", "train_clients", "tracked", "train", "server", "bytes", "time", "eval", "stage")


def never_produced(cfg, path: str) -> str | None:
    """Why the metric `path` (a name with "/") can never be in this configuration's last evaluation, or None
    (also for names it cannot judge before the run: training terms, summary.json paths)."""
    import re

    if "/" not in path:
        return None
    family, _, leaf = path.partition("/")
    if family not in FAMILIES:
        return f"no metric family '{family}' (metrics start with one of: {', '.join(FAMILIES)})"
    p = cfg.personalization
    if family == "train_clients" and p.population == "heldout" and p.train_clients == 0:
        return "training clients are not evaluated (personalization.train_clients=0)"
    m = re.fullmatch(r"(pers_acc|worse_frac|beats_local_frac)_(\d+)", leaf)
    if family in ("heldout", "train_clients") and m:
        k = int(m.group(2))
        if k not in _report_epochs(cfg):
            return (f"{k} personalization epochs are not reported (personalization.epochs={list(p.epochs)}; "
                    "add it there)")
    if family in ("heldout", "train_clients") and leaf.startswith(("local_acc", "beats_local")) and \
            not p.get("local_baseline", False):
        return "the local-only baseline is off (personalization.local_baseline=false)"
    return None


def _report_epochs(cfg) -> set[int]:
    """personalization.epochs and the epochs the run's algorithm(s) add (the local-only baseline's)."""
    from pfl.config import build

    nodes = [cfg.algorithm] if cfg.get("stages") is None else [s.algorithm for s in cfg.stages]
    extra: set[int] = set()
    for node in nodes:
        try:
            extra |= {int(k) for k in build(node, path="algorithm").report_epochs}
        except Exception:  # noqa: BLE001 - an algorithm that cannot be built here is reported elsewhere
            return set(range(10**6))
    return {int(k) for k in cfg.personalization.epochs} | extra


def check_objectives(cfg, objectives: list[str]) -> None:
    """A sweep whose objective can never be produced is refused before its first trial (ConfigError)."""
    from pfl.config.errors import ConfigError

    for path in objectives:
        why = never_produced(cfg, str(path))
        if why:
            raise ConfigError("sweep.objectives", str(path), f"a metric this run produces; '{path}' never is: {why}")
