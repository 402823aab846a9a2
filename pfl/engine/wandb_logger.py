"""Weights & Biases logging through Lightning's WandbLogger, offline without a key.

Every run logs its resolved config (nested, at start), one history row per
round at step = round (the rows of metrics.csv; names: pfl.engine.names), and
at the end the summary values that are not already history (rounds to target,
FLOPs, wall time, ...), the personalization curve as a chart
(`charts/personalization_curve`), the PNGs in run_dir/plots (`plots/<name>`)
and the per-client tables (`tables/clients_<population>`). `define_metric`
makes the run summary hold the best and last value of every accuracy
(`heldout/pers_acc_5.max`, `.last`). A run's name is what differs within its
multirun or sweep (`afml ζ=0.4 seed=1`, `trial 3: local_epochs=5 lr=0.013`);
its group is the sweep's name, the experiment, or the grid's swept keys and
start time; job_type is train, sweep-trial or centralized; tags name
algorithm, dataset, ζ (and sweep).
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

from pytorch_lightning.loggers import WandbLogger

from pfl.engine.experiment import RunInfo

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
        for k, v in _flatten({k: v for k, v in summary.items() if k not in IN_HISTORY}).items():
            if not isinstance(v, list):
                run.summary[k] = v
        curve = summary.get("personalization_curve")
        if curve:
            table = wandb.Table(columns=["epochs", "accuracy"], data=[[k, a] for k, a in enumerate(curve)])
            run.log({"charts/personalization_curve": wandb.plot.line(
                table, "epochs", "accuracy", title=f"{summary.get('population', 'heldout')} accuracy after k personalization epochs")})
        for png in sorted(Path(run_dir).glob("plots/*.png")):
            run.log({f"plots/{png.stem}": wandb.Image(str(png))})
        for path in sorted(Path(run_dir).glob("clients_*.csv")):
            columns, rows = _read_table(path)
            if rows:
                run.log({f"tables/{path.stem}": wandb.Table(columns=columns, data=rows)})
        self._finish(0)

    def define_metrics(self) -> None:
        """Summary of each accuracy: its best and its last value; of each training metric: min and last."""
        run = self.experiment
        for prefix in ("heldout", "train_clients", "tracked"):
            run.define_metric(f"{prefix}/*", step_metric="trainer/global_step", summary="max,last")
        run.define_metric("train/*", step_metric="trainer/global_step", summary="min,last")

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


# summary.json entries whose numbers are already in the history under their metric names (pfl.engine.names)
IN_HISTORY = ("initial_accuracy", "personalized_accuracy", "personalization_curve", "fraction_worse", "train_clients",
              "heldout_clients", "local_baseline", "bytes", "final")


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


def run_identity(run: RunInfo, run_dir: Path, group: str | None = None,
                 tags=()) -> tuple[str | None, list[str], str]:
    """(group, tags, name): a sweep's runs share its group; tags name algorithm, dataset and ζ; the name is what
    differs within the multirun or sweep (a single run: its directory's name)."""
    tags = list(tags or []) + [f"algorithm:{run.algorithm}", f"dataset:{run.dataset}", f"zeta:{run.zeta}"]
    name = Path(run_dir).name
    if run.sweep_name:
        group = group or run.sweep_name
        tags.append(f"sweep:{run.sweep_name}")
        if run.sweep_trial is not None:
            name = f"trial {run.sweep_trial}" + (f": {run.label}" if run.label else "")
    elif run.multirun_group is not None:
        group = group or run.multirun_group
        name = run.label or f"job {Path(run_dir).name}"
    return group, tags, name


def make_wandb_logger(run: RunInfo, run_dir: Path, project: str = "pfl", entity: Optional[str] = None,
                      group: Optional[str] = None, tags: List[str] = (), mode: str = "auto",
                      job_type: Optional[str] = None) -> WandbLogger:
    """logger=wandb. group (null: the sweep, experiment or grid) and tags (beside algorithm/dataset/zeta) are read
    from logger.wandb by run_identity; mode: auto (online with an API key, else offline) | online | offline | disabled;
    job_type (null: sweep-trial, centralized or train)."""
    import wandb

    from pfl.engine.loggers import wandb_mode

    mode = wandb_mode(mode)

    os.environ.setdefault("WANDB_SILENT", "true")
    if wandb.run is not None:  # left open by an earlier run of this process that crashed after training
        wandb.run.finish(exit_code=1)
    group, tags, name = run_identity(run, run_dir, group, tags)
    logger = PflWandbLogger(
        project=project,
        entity=entity,
        group=group,
        tags=tags,
        save_dir=str(run_dir),
        offline=mode == "offline",
        mode=mode,  # explicit: an earlier run in this process (or WANDB_MODE) does not decide
        config=run.config,
        name=name,
        job_type=job_type or run.job_type,
    )
    logger.define_metrics()
    return logger

