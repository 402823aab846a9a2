"""`train(cfg)`: validate the config, build the experiment it names, fit it, write the outputs.

A plain function (the Hydra wrapper lives in pfl.cli), so tests and sweeps
call it directly. Returns the summary dict that is also `summary.json`.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

from omegaconf import DictConfig

from pfl.config.experiment import build_experiment, build_stages  # noqa: F401 - build_stages: tests build stages
from pfl.config.schema import build, validate  # noqa: F401 - build: tests build config nodes through pfl.run
from pfl.engine.tensorboard_extras import is_tensorboard, log_run_summary
from pfl.engine.checkpoint import load_global_params  # noqa: F401 - tests read a run's server model
from pfl.engine.experiment import Experiment
from pfl.engine.files import write_json
from pfl.engine.fit import Fitted, fit, run_summary
from pfl.engine.run_dir import claim
from pfl.engine.summary import write_client_records

log = logging.getLogger("pfl")
# Lightning's start-up chatter (accelerator lines, tips) is not about the experiment
logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
logging.getLogger("pytorch_lightning.accelerators.cuda").setLevel(logging.WARNING)
logging.getLogger("pytorch_lightning.trainer.connectors.checkpoint_connector").setLevel(logging.WARNING)
# Lightning 2.6 calls a torch pytree API that torch 2.13 deprecates; harmless, and not ours to fix
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=DeprecationWarning)


def train(cfg: DictConfig, run_dir: str | Path | None = None) -> dict:
    started = time.perf_counter()
    validate(cfg)
    run_dir = Path(run_dir or _hydra_run_dir())
    with claim(run_dir, cfg.resume, bool(cfg.get("overwrite", False))):  # one run per folder (pfl.engine.run_dir)
        experiment = build_experiment(cfg)
        fitted = fit(experiment, run_dir, started)
        return write_outputs(experiment, run_dir, fitted)


def write_outputs(exp: Experiment, run_dir: Path, fitted: Fitted) -> dict:
    """summary.json, clients_*.csv (replicas: replicas/<r>/), plots/*.png, the loggers' summaries; the summary."""
    module = fitted.module
    summary = {"status": "completed", **run_summary(exp, module, time.perf_counter() - fitted.started),
               "engine": dict(exp.engine)}
    if not fitted.trainer.is_global_zero:  # rank 0 writes the run's files
        return summary
    write_json(run_dir / "summary.json", summary)
    write_client_records(run_dir, module.reps[0].last_eval.get("results", {}))  # replicas: replica 0's at the top
    for i, rep in enumerate(module.reps[1:] if len(module.reps) > 1 else [], start=1):
        (run_dir / "replicas" / str(i)).mkdir(parents=True, exist_ok=True)
        write_client_records(run_dir / "replicas" / str(i), rep.last_eval.get("results", {}))
    if exp.plots:
        _plots(run_dir, module, summary)
    for lg in fitted.loggers:
        if hasattr(lg, "log_summary"):
            lg.log_summary(summary, run_dir)
        elif is_tensorboard(lg):  # hparams with the final metrics, the plots, the config
            log_run_summary(lg, exp.run, summary, run_dir)
    return summary


def _plots(run_dir: Path, module, summary: dict) -> None:
    """plots/*.png from the files written above (W&B uploads them in log_summary); never fails the run."""
    from pfl.evaluation.fairness import scatter_plot
    from pfl.report.run_plots import write_run_plots

    try:
        write_run_plots(run_dir)
        head = module.reps[0].last_eval.get("results", {}).get(module.personalization.headline)  # Acc_local's population
        if head is not None and head.local_accuracy is not None:
            scatter_plot(head, max(module.report_epochs), run_dir / "plots" / "scatter_local.png", summary["algorithm"])
    except Exception as exc:  # noqa: BLE001 - the results are already on disk; a plot must not fail the run
        log.warning("plots not written: %s (redraw: python -m pfl.report.run_plots %s)", exc, run_dir)


def _hydra_run_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    try:
        return HydraConfig.get().runtime.output_dir
    except ValueError:
        return str(Path("outputs") / time.strftime("%Y-%m-%d/%H-%M-%S"))
