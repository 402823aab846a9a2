"""Weights & Biases logging through Lightning's WandbLogger, offline without a key.

Every run logs its resolved config (at start), the evaluation rows (the same
as metrics.csv), and at the end the summary, the personalization curve, the
plots in run_dir/plots and the per-client tables. Runs of one sweep share a
group named after it (a Hydra multirun without an Optuna sweep: its sweep
directory) and carry the tags algorithm:, dataset:, zeta: (and sweep:).
A run that ends with an exception is finished at once (so the next trial in
the same process gets its own run) and marked: a trial stopped by its pruner
gets the tag `pruned` and summary `trial_state: PRUNED`; any other exception
marks it failed (exit code 1) with `failure` in the summary.
"""

from __future__ import annotations

import csv
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

log = logging.getLogger("pfl")


class PflWandbLogger(WandbLogger):
    """WandbLogger that also receives the final summary, per-client tables and plots."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:  # current wandb warns about the key even when None
            self._wandb_init.pop("anonymous", None)

    def log_summary(self, summary: dict, run_dir: Path) -> None:
        import wandb

        run = self.experiment
        for k, v in _flatten(summary).items():
            if not isinstance(v, list):
                run.summary[k] = v
        curve = summary.get("personalization_curve")
        if curve:
            table = wandb.Table(columns=["epochs", "accuracy"], data=[[k, a] for k, a in enumerate(curve)])
            run.log({"plots/personalization_curve": wandb.plot.line(
                table, "epochs", "accuracy", title="held-out accuracy after k personalization epochs")})
        for png in sorted(Path(run_dir).glob("plots/*.png")):
            run.log({f"plots/{png.stem}": wandb.Image(str(png))})
        for path in sorted(Path(run_dir).glob("clients_*.csv")):
            columns, rows = _read_table(path)
            if rows:
                run.log({f"tables/{path.stem}": wandb.Table(columns=columns, data=rows)})
        self._finish(0)

    def finalize(self, status: str) -> None:
        super().finalize(status)
        if status == "success" or self._experiment is None:
            return
        # Lightning calls this from inside its `except` block: the exception is the current one
        exc = sys.exc_info()[1]
        run = self._experiment
        if _is_pruned(exc):
            run.tags = tuple(run.tags or ()) + ("pruned",)
            run.summary["trial_state"] = "PRUNED"
            run.summary["pruned"] = str(exc)
            self._finish(0)
        else:
            run.summary["trial_state"] = "FAILED"
            run.summary["failure"] = f"{type(exc).__name__}: {exc}" if exc is not None else status
            self._finish(1)

    def _finish(self, exit_code: int) -> None:
        run = self.experiment
        offline = self._offline or getattr(getattr(run, "settings", None), "mode", "") in ("offline", "dryrun")
        run_path = Path(run.dir).parent if getattr(run, "dir", None) else None
        run.finish(exit_code=exit_code)
        self._experiment = None
        if offline and run_path is not None:
            log.info("W&B run saved offline; upload it with: wandb sync %s", run_path)


def _is_pruned(exc) -> bool:
    if exc is None:
        return False
    try:
        import optuna

        return isinstance(exc, optuna.TrialPruned)
    except ImportError:  # pragma: no cover
        return False


def _read_table(path: Path) -> tuple[list[str], list[list]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return [], []
    return rows[0], [[_number(v) for v in r] for r in rows[1:]]


def _number(v: str):
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def run_identity(cfg: DictConfig, run_dir: Path) -> tuple[str | None, list[str], str]:
    """(group, tags, name): a sweep's runs share its group; tags name algorithm, dataset and ζ."""
    from pfl.config import stage_names

    alg = "+".join(stage_names(cfg))
    tags = list(cfg.logger.get("tags") or []) + [f"algorithm:{alg}", f"dataset:{cfg.dataset.name}", f"zeta:{cfg.zeta}"]
    group, name = cfg.logger.get("group"), Path(run_dir).name
    sweep = cfg.get("sweep")
    if sweep is not None and sweep.get("name"):
        group = group or str(sweep.name)
        tags.append(f"sweep:{sweep.name}")
        if sweep.get("trial") is not None:
            name = f"{sweep.get('study') or sweep.name}-trial{sweep.trial}"
    elif group is None:
        multirun = _multirun_dir()
        if multirun:
            group = multirun
            name = f"{Path(multirun).name}-{Path(run_dir).name}"
    return group, tags, name


def _multirun_dir() -> str | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return str(HydraConfig.get().sweep.dir)


def make_wandb_logger(cfg: DictConfig, run_dir: Path, project: str = "pfl", entity: Optional[str] = None,
                      group: Optional[str] = None, tags: List[str] = (), mode: str = "auto") -> WandbLogger:
    """logger=wandb. group (null: the sweep or multirun) and tags (beside algorithm/dataset/zeta) are read
    from cfg.logger by run_identity; mode: auto (online with an API key, else offline) | online | offline | disabled."""
    import wandb

    from pfl.engine.loggers import wandb_mode

    mode = wandb_mode(mode)

    os.environ.setdefault("WANDB_SILENT", "true")
    if wandb.run is not None:  # left open by an earlier run of this process that crashed after training
        wandb.run.finish(exit_code=1)
    group, tags, name = run_identity(cfg, run_dir)
    return PflWandbLogger(
        project=project,
        entity=entity,
        group=group,
        tags=tags,
        save_dir=str(run_dir),
        offline=mode == "offline",
        mode=mode if mode == "disabled" else None,
        config=OmegaConf.to_container(cfg, resolve=True),
        name=name,
    )
