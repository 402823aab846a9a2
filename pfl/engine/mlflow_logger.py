"""MLflow logging (`logger=mlflow`) through Lightning's MLFlowLogger, as rich as the W&B runs.

**One store per output root.** Every run of a sweep, grid or multirun logs into one SQLite store in
that multirun's folder, `<hydra.sweep.dir>/mlflow/mlflow.db` (a single run or `pfl.run.train`: the
run directory's parent), so one `mlflow ui --backend-store-uri sqlite:///<root>/mlflow/mlflow.db`
compares them; artifacts go to `<root>/mlflow/artifacts/`. SQLite rather than MLflow's file store:
the file store is in maintenance mode (refused by default by current MLflow), and SQLite serializes
concurrent writers from parallel sweep workers by itself. Two things are done with care: the store's
tables and the experiment are created once, under an exclusive `flock` on `<root>/mlflow/.lock`
(two workers starting together would otherwise both create them), and every connection waits up to
60 s for a busy database instead of failing at once. Many machines over a network file system should
use a server instead: `logger.mlflow.tracking_uri=http://host:5000` (or MLFLOW_TRACKING_URI).

**What a run gets.** Its name is W&B's (pfl.engine.wandb_logger.run_identity: `trial 3: lr=0.013`,
`afml ζ=0.4 seed=1`, else the run directory's name); tags `algorithm`, `stages`, `dataset`, `zeta`,
`seed`, `job_type`, and where they apply `group`, `sweep`, `trial` (plus logger.mlflow.tags); the
resolved config as parameters; one metric row per round at step = round (pfl.engine.names); at the end
the final metrics (`final/initial_acc`, `final/pers_acc_<k>`) and the summary's other numbers
(`summary/...`), and the artifacts config.yaml, summary.json, metrics.csv, clients_*.csv and plots/.
A resumed run continues its MLflow run (the id is kept in `<run dir>/mlflow_run.json`). A run that ends
with an exception is marked: KILLED with tag `trial_state` PRUNED (pruned by Optuna) or STOPPED
(a signal), else FAILED with tag `failure`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import sys
import time
from pathlib import Path
from typing import Optional

from pytorch_lightning.loggers import MLFlowLogger

from pfl.engine.experiment import RunInfo
from pfl.engine.wandb_logger import IN_HISTORY, _flatten, _is_pruned, run_identity

log = logging.getLogger("pfl")

STORE = "mlflow"  # <output root>/mlflow/{mlflow.db, artifacts/, .lock}
RUN_FILE = "mlflow_run.json"  # <run dir>/mlflow_run.json: the MLflow run a resumed run continues
ARTIFACTS = ("config.yaml", "summary.json", "metrics.csv", "clients_*.csv", "plots/*.png")


def output_root(run: RunInfo, run_dir: Path) -> Path:
    """The folder whose runs share a store: the multirun's (sweep's) folder, else the run directory's parent."""
    return Path(run.output_root or Path(run_dir).resolve().parent).resolve()


def shared_store(root: Path, experiment_name: str) -> tuple[str, str]:
    """(tracking URI, experiment id) of the SQLite store under `root`, its tables and experiment created once."""
    from mlflow.tracking import MlflowClient

    for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.sqlalchemy_store"):  # schema chatter at creation
        logging.getLogger(name).setLevel(logging.WARNING)
    folder = Path(root) / STORE
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}?timeout=60"
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or the process dies)
        client = MlflowClient(uri)
        found = client.get_experiment_by_name(experiment_name)
        if found is None:
            return uri, client.create_experiment(experiment_name, artifact_location=(folder / "artifacts").as_uri())
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return uri, found.experiment_id


def run_tags(run: RunInfo, run_dir: Path, tags: Optional[dict]) -> tuple[str, dict]:
    """(run name, tags): W&B's name; algorithm, stages, dataset, zeta, seed, job_type, group/sweep/trial."""
    group, _, name = run_identity(run, run_dir)
    out = {"algorithm": run.algorithm, "stages": ",".join(run.algorithm.split("+")), "dataset": run.dataset,
           "zeta": str(run.zeta), "seed": str(run.seed), "job_type": run.job_type}
    extra = {"group": group, "sweep": run.sweep_name,
             "trial": None if run.sweep_trial is None else str(run.sweep_trial)}
    out.update({k: v for k, v in extra.items() if v is not None})
    out.update({str(k): str(v) for k, v in (tags or {}).items()})
    return name, out


def summary_metrics(summary: dict) -> dict[str, float]:
    """`final/initial_acc`, `final/pers_acc_<k>` and every other number of summary.json as `summary/<path>`."""
    from pfl.engine.summary import headline_metrics

    out = headline_metrics(summary, "final")
    for k, v in _flatten({k: v for k, v in summary.items() if k not in IN_HISTORY}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"summary/{k}"] = float(v)
    return out


class PflMLFlowLogger(MLFlowLogger):
    """MLFlowLogger that also receives the final summary and the run's files, and marks how a run ended."""

    def log_summary(self, summary: dict, run_dir: Path) -> None:
        from mlflow.entities import Metric

        client, run_id = self.experiment, self.run_id
        now, step = int(time.time() * 1000), int(summary.get("rounds") or 0)
        client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in summary_metrics(summary).items()])
        for pattern in ARTIFACTS:
            for path in sorted(Path(run_dir).glob(pattern)):
                client.log_artifact(run_id, str(path), str(path.parent.relative_to(run_dir)).strip(".") or None)
        client.set_terminated(run_id, "FINISHED")
        if self._tracking_uri.startswith("sqlite:"):
            log.info("MLflow run %r; compare runs with: mlflow ui --backend-store-uri %s",
                     self._run_name, self._tracking_uri.split("?")[0])

    def finalize(self, status: str = "success") -> None:
        super().finalize(status)
        if status == "success" or not self._initialized:
            return
        exc = sys.exc_info()[1]  # Lightning calls this from inside its `except` block
        if _is_pruned(exc) or type(exc).__name__ == "Stopped":
            self.experiment.set_tag(self.run_id, "trial_state", "PRUNED" if _is_pruned(exc) else "STOPPED")
            self.experiment.set_terminated(self.run_id, "KILLED")
        else:
            self.experiment.set_tag(self.run_id, "trial_state", "FAILED")
            self.experiment.set_tag(self.run_id, "failure", f"{type(exc).__name__}: {exc}" if exc else status)


def make_mlflow_logger(run: RunInfo, run_dir: Path, resume_round: Optional[int] = None, experiment_name: str = "pfl",
                       tracking_uri: Optional[str] = None, tags: Optional[dict] = None,
                       log_model: bool = False, artifact_location: Optional[str] = None) -> PflMLFlowLogger:
    """logger=mlflow. tracking_uri null: MLFLOW_TRACKING_URI, else the output root's SQLite store (see above);
    tags: added to the run's own; artifact_location: the experiment's, where this run creates it."""
    import os

    from pytorch_lightning.utilities import rank_zero_only

    requested = os.environ.get("MLFLOW_TRACKING_URI")
    uri = tracking_uri or requested
    if rank_zero_only.rank != 0:  # rank 0 logs for all (Lightning's logger methods are rank-zero only)
        return PflMLFlowLogger(experiment_name=experiment_name, tracking_uri=uri or "sqlite://")
    if not uri:
        uri, _ = shared_store(output_root(run, run_dir), experiment_name)
    name, all_tags = run_tags(run, Path(run_dir), tags)
    saved = Path(run_dir) / RUN_FILE
    previous = json.loads(saved.read_text()) if resume_round is not None and saved.is_file() else {}
    run_id = previous.get("run_id") if previous.get("tracking_uri") == uri else None
    logger = PflMLFlowLogger(experiment_name=experiment_name, run_name=name, tracking_uri=uri, tags=all_tags,
                             log_model=log_model, artifact_location=artifact_location, run_id=run_id)
    if run_id is not None:
        logger.experiment.update_run(run_id, status="RUNNING")
    else:
        logger.log_hyperparams(run.config)
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({"run_id": logger.run_id, "tracking_uri": uri}) + "\n")
    import mlflow

    # Lightning's logger sets MLflow's process-wide URI, and so MLFLOW_TRACKING_URI: the next run of this
    # process (a sweep's next trial) would take it for the user's and log into this run's store
    mlflow.set_tracking_uri(requested)
    return logger
