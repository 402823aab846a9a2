"""`fit(experiment, run_dir, started)`: the module, checkpoints and resume, loggers, the Trainer; then the rounds.

A run that diverges leaves summary.json with status "diverged" here; a finished
run's files are written by the caller (pfl.run.write_outputs) from `Fitted`.
"""

from __future__ import annotations

import contextlib

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only
from tqdm.contrib.logging import logging_redirect_tqdm

from pfl.config.errors import ConfigError
from pfl.engine.checkpoint import RoundCheckpoint, load_global_params, resume_point
from pfl.engine.experiment import Experiment
from pfl.engine.faults import Diverged, Stopped
from pfl.engine.files import write_json
from pfl.engine.loggers import make_loggers
from pfl.engine.module import FederatedModule
from pfl.engine.progress import RoundProgressBar
from pfl.engine.replicas import combine_summaries
from pfl.engine.stop_signal import StopOnSignal
from pfl.engine.summary import summarize
from pfl.models import current_name

log = logging.getLogger("pfl")
DIVERGED_HINT = "try a smaller client_opt.lr"


@dataclass
class Fitted:
    module: FederatedModule
    trainer: pl.Trainer
    loggers: list
    started: float  # time.perf_counter() when the run started (before building)


def make_module(exp: Experiment) -> FederatedModule:
    module = FederatedModule(
        data=exp.data, model=exp.model, stages=list(exp.stages), local=exp.local, personalize_local=exp.personal,
        clients_per_round=exp.run.clients_per_round, backend=exp.backend, personalization=exp.personalization,
        eval_every=exp.eval_every, seed=exp.run.seed, eval_chunk_size=exp.eval_chunk_size,
        local_cache_dir=exp.local_cache_dir, replicas=exp.replicas, count_flops=exp.count_flops)
    if exp.init_from:
        own = module.params()
        loaded = {(k if k in own else current_name(k)): v for k, v in load_global_params(exp.init_from).items()}
        bad = next((k for k, v in loaded.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
        if bad is not None:
            raise ConfigError("init_from", exp.init_from, f"a checkpoint with finite weights (its tensor {bad} holds "
                              "NaN or inf: the run it comes from had diverged)")
        if set(loaded) != set(own) or any(loaded[k].shape != own[k].shape for k in own):
            raise ConfigError("init_from", exp.init_from, "a checkpoint of the same model and algorithm family")
        with torch.no_grad():  # every replica starts from it, as a separate run with that seed would
            for i in range(len(module.reps)):
                for k, v in module.params(i).items():
                    v.copy_(loaded[k])
        log.info("initialized the global model from %s", exp.init_from)
    return module


def fit(exp: Experiment, run_dir: Path, started: float) -> Fitted:
    module = make_module(exp)
    ckpt_cb = RoundCheckpoint(run_dir / "checkpoints", exp.checkpoint_every, exp.run.config)
    ckpt_path, resume_round = resume_point(exp.resume, ckpt_cb, run_dir, exp.run.config, module)
    loggers = make_loggers(exp.loggers, exp.run, run_dir, resume_round)
    stopper = StopOnSignal(ckpt_cb)  # SIGTERM / SIGINT: stop at the next round or evaluation chunk
    t = exp.trainer
    bar = [RoundProgressBar(module.total_rounds, resume_round or 0)] if t.progress_bar else []
    trainer = pl.Trainer(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
        max_steps=module.total_rounds, max_epochs=-1, logger=loggers,
        callbacks=[ckpt_cb, stopper, *bar, *exp.callbacks], enable_progress_bar=t.progress_bar,
        enable_checkpointing=False, num_sanity_val_steps=0, default_root_dir=str(run_dir), **t.settings)
    if rank_zero_only.rank == 0:  # after the checks above: a refused resume leaves the run's files as they were
        (run_dir / "config.yaml").write_text(exp.run.config_yaml)
    log.info("dataset %s: %d training / %d held-out clients; backend %s on %s",
             exp.data.name, len(exp.data.train), len(exp.data.heldout), exp.backend.kind, exp.device)
    if trainer.world_size == 1:  # inside an evaluation; with several ranks they agree between rounds only
        module.interrupt_check = stopper.check
    try:
        with stopper, (logging_redirect_tqdm() if t.progress_bar else contextlib.nullcontext()):
            trainer.fit(module, ckpt_path=ckpt_path, weights_only=True)  # log lines above the bar, not into it
    except Diverged as exc:
        exc.checkpoint = ckpt_cb.last if ckpt_cb.saved_round is not None else ""
        exc.checkpoint_round, exc.hint = ckpt_cb.saved_round, DIVERGED_HINT
        if trainer.is_global_zero:
            write_json(run_dir / "summary.json", {
                "status": "diverged", "rounds_completed": exc.round - 1, "reason": str(exc),
                "last_checkpoint": str(exc.checkpoint) or None, "last_checkpoint_round": exc.checkpoint_round,
                **run_summary(exp, module, time.perf_counter() - started)})
        raise
    except Stopped as exc:
        exc.round = ckpt_cb.saved_round if exc.round is None else exc.round
        exc.run_dir = run_dir
        raise
    return Fitted(module, trainer, loggers, started)


def run_summary(exp: Experiment, module: FederatedModule, wall_time: float) -> dict:
    """summary.json: a single run's summary, or for replicas=R one per replica and their mean and std
    (pfl.engine.replicas.combine_summaries)."""
    kind, device = exp.backend.kind, exp.device
    if len(module.reps) == 1:
        return summarize(exp.run, module, kind, device, wall_time)
    parts = [summarize(exp.run.replica(i), _ReplicaView(module, i), kind, device, wall_time)
             for i in range(len(module.reps))]
    return combine_summaries(summarize(exp.run, module, kind, device, wall_time), parts)


class _ReplicaView:
    """What `summarize` reads of a module, for replica i."""

    def __init__(self, module: FederatedModule, i: int):
        self._module, self._rep = module, module.reps[i]
        self.history, self.bytes_total = self._rep.history, self._rep.bytes_total
        self.track_history = self._rep.track_history

    def __getattr__(self, name):
        return getattr(self._module, name)
