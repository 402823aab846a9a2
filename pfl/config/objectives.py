"""A sweep's objectives that no trial can produce, refused at start-up (`validate` calls `check_objectives`).

A name with "/" (`heldout/pers_acc_5`) is judged from the configuration: its metric family exists,
the personalization epochs it names are reported, the population and the local-only baseline it
needs are evaluated. pfl.sweep.objective reads the values out of a finished run's summary.
"""

from __future__ import annotations


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
    """personalization.epochs and the epochs the run's algorithm(s) add (FedAvg-FT's K)."""
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
