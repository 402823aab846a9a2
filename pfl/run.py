"""`train(cfg)`: build everything a config names, run the rounds, write the outputs.

A plain function (the Hydra wrapper lives in pfl.cli), so tests and sweeps
call it directly. Returns the summary dict that is also `summary.json`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pfl.algorithms.local import LocalTrainer
from pfl.config import build, stage_names, trainer_settings, validate, validate_population
from pfl.config_errors import ConfigError
from pfl.data.augment import flag_permuted_clients
from pfl.engine.checkpoint import CheckpointError, RoundCheckpoint, config_changes, read_checkpoint
from pfl.engine.faults import Diverged, Stopped
from pfl.engine.stop_signal import StopOnSignal
from pfl.engine.distributed import make_strategy
from pfl.engine.files import write_json
from pfl.engine.loggers import make_loggers
from pfl.engine.progress import RoundProgressBar, progress_bar_enabled
from pfl.engine.module import FederatedModule, Stage
from pfl.evaluation.settings import PersonalizationSettings
from pfl.execution import make_backend
from pfl.engine.replicas import combine_summaries
from pfl.engine.summary import summarize, write_client_records
from pfl.report.run_plots import write_run_plots
from pfl.evaluation.fairness import scatter_plot
from pfl.task import Task

log = logging.getLogger("pfl")
# Lightning's start-up chatter (accelerator lines, tips) is not about the experiment
logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
logging.getLogger("pytorch_lightning.accelerators.cuda").setLevel(logging.WARNING)
logging.getLogger("pytorch_lightning.trainer.connectors.checkpoint_connector").setLevel(logging.WARNING)
# Lightning 2.6 calls a torch pytree API that torch 2.13 deprecates; harmless, and not ours to fix
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=DeprecationWarning)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", name, "a device this machine has (no CUDA GPU is visible): auto or cpu")
    return torch.device(name)


def build_stages(cfg: DictConfig) -> list[Stage]:
    names = stage_names(cfg)  # the algorithm's option (`algorithm=reptile`), or each stage's name
    if cfg.stages is None:  # one algorithm; it may stand for several stages (FedAvg-FT)
        parts = build(cfg.algorithm, path="algorithm").stages(instantiate(cfg.server_opt), cfg.rounds)
        return [Stage(alg, opt, rounds, names[0] + suffix, names[0]) for suffix, alg, opt, rounds in parts]
    return [Stage(build(s.algorithm, path=f"stages.{i}.algorithm"), instantiate(s.server_opt), s.rounds, names[i])
            for i, s in enumerate(cfg.stages)]


DIVERGED_HINT = "try a smaller client_opt.lr"


def load_global_params(path: str | Path) -> dict[str, torch.Tensor]:
    """The server's parameters stored in a checkpoint file or a run directory."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise ConfigError("init_from", str(path), "a checkpoint file or a run directory with checkpoints/last.ckpt")
    ckpt = read_checkpoint(path, "init_from")
    names = ckpt.get("pfl", {}).get("param_names", {})
    prefix = "global_params."
    return {names.get(k[len(prefix):], k[len(prefix):]): v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}


def train(cfg: DictConfig, run_dir: str | Path | None = None) -> dict:
    t0 = time.perf_counter()
    validate(cfg)
    run_dir = Path(run_dir or _hydra_run_dir())
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)

    pl.seed_everything(cfg.seed, workers=False, verbose=False)
    data = flag_permuted_clients(build(cfg.dataset, path="dataset"))  # ζ-permuted clients augment, where the data set can
    validate_population(cfg, len(data.train), len(data.heldout))
    model = build(cfg.model, path="model", num_classes=data.num_classes, **data.info.get("model_kwargs", {}))
    precision = (cfg.get("trainer") or {}).get("precision")
    task = Task(model, data.input_transform, data.ignore_index, data.augment, precision=precision)
    torch.set_float32_matmul_precision(str(cfg.engine.get("matmul_precision", "highest")))  # "high": TF32 on CUDA
    check_model_fits(cfg, task, data)
    local = LocalTrainer(task, build(cfg.client_opt, path="client_opt"))
    p_opt = cfg.personalization.client_opt
    personal = LocalTrainer(task, build(p_opt, path="personalization.client_opt")) if p_opt is not None else local
    stages = build_stages(cfg)
    device = resolve_device(str(cfg.device))
    p = PersonalizationSettings(**OmegaConf.to_container(cfg.personalization, resolve=True))
    replicas = build_replicas(cfg, data, task) if int(cfg.get("replicas", 1)) > 1 else None
    backend = make_backend(cfg.engine.backend, model, device, None, compile=bool(cfg.engine.get("compile", False)))
    chunk, eval_chunk = _chunk_sizes(cfg, backend, local, personal, task, data, device, p)
    backend = dataclasses.replace(backend, chunk_size=chunk)
    module = FederatedModule(
        data=data, model=model, stages=stages, local=local, personalize_local=personal,
        clients_per_round=cfg.clients_per_round, backend=backend, personalization=p,
        eval_every=cfg.eval_every, seed=cfg.seed, eval_chunk_size=eval_chunk,
        local_cache_dir=_local_cache_dir() if p.local_cache else None, replicas=replicas,
    )
    if cfg.init_from:
        loaded = load_global_params(cfg.init_from)
        own = module.params()
        if set(loaded) != set(own) or any(loaded[k].shape != own[k].shape for k in own):
            raise ConfigError("init_from", cfg.init_from, "a checkpoint of the same model and algorithm family")
        with torch.no_grad():  # every replica starts from it, as a separate run with that seed would
            for i in range(len(module.reps)):
                for k, v in module.params(i).items():
                    v.copy_(loaded[k])
        log.info("initialized the global model from %s", cfg.init_from)

    ckpt_cb = RoundCheckpoint(run_dir / "checkpoints", cfg.checkpoint_every, resolved)
    ckpt_path, resume_round = None, None
    if cfg.resume is True and not ckpt_cb.last.is_file():
        raise CheckpointError("resume", run_dir, f"resume=true: nothing to resume in {run_dir} (no checkpoints/last.ckpt); "
                              "give the run's hydra.run.dir, or resume=auto to start when there is no checkpoint")
    if cfg.resume and ckpt_cb.last.is_file():
        ckpt_path = str(ckpt_cb.last)
        ckpt = read_checkpoint(ckpt_cb.last, "resume", "; delete it (or use another hydra.run.dir) to start over")
        changed = config_changes(ckpt["pfl_config"], resolved) if "pfl_config" in ckpt else []
        if changed:
            raise CheckpointError("resume", run_dir, f"resume: the configuration differs from the checkpoint's in "
                                  f"{'; '.join(changed)} (only rounds and logging may change on resume; "
                                  "use another hydra.run.dir for a new run)")
        resume_round = ckpt_cb.saved_round = int(ckpt["state_dict"]["round"])
        log.info("resuming from %s (round %d)", ckpt_path, resume_round)
    elif cfg.resume:
        log.info("resume=auto: no checkpoint in %s, starting from round 0", run_dir)
    loggers = make_loggers(cfg, run_dir, resume_round)
    accelerator, devices, num_nodes, strategy = _distribution(cfg, device)
    stopper = StopOnSignal(ckpt_cb)  # SIGTERM / SIGINT: stop at the next round or evaluation chunk
    settings = {"enable_model_summary": False, "log_every_n_steps": 1, **trainer_settings(cfg)}  # trainer.*
    bar = progress_bar_enabled(settings.pop("enable_progress_bar", None))
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        max_steps=module.total_rounds,
        max_epochs=-1,
        logger=loggers,
        callbacks=[ckpt_cb, stopper, *([RoundProgressBar(module.total_rounds, resume_round or 0)] if bar else []),
                   *_extra_callbacks(cfg)],
        enable_progress_bar=bar,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        default_root_dir=str(run_dir),
        **settings,
    )
    if rank_zero_only.rank == 0:  # after the checks above: a refused resume leaves the run's files as they were
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    log.info("dataset %s: %d training / %d held-out clients; backend %s on %s",
             data.name, len(data.train), len(data.heldout), backend.kind, device)
    if trainer.world_size == 1:  # inside an evaluation; with several ranks they agree between rounds only
        module.interrupt_check = stopper.check
    try:
        with stopper:
            trainer.fit(module, ckpt_path=ckpt_path, weights_only=True)
    except Diverged as exc:
        exc.checkpoint = ckpt_cb.last if ckpt_cb.saved_round is not None else ""
        exc.checkpoint_round, exc.hint = ckpt_cb.saved_round, DIVERGED_HINT
        if trainer.is_global_zero:
            summary = run_summary(cfg, module, backend.kind, device, time.perf_counter() - t0)
            write_json(run_dir / "summary.json", {
                "status": "diverged", "rounds_completed": exc.round - 1, "reason": str(exc),
                "last_checkpoint": str(exc.checkpoint) or None, "last_checkpoint_round": exc.checkpoint_round,
                **summary})
        raise
    except Stopped as exc:
        exc.round = ckpt_cb.saved_round if exc.round is None else exc.round
        exc.run_dir = run_dir
        raise
    summary = {"status": "completed", **run_summary(cfg, module, backend.kind, device, time.perf_counter() - t0),
               "engine": {"chunk_size": chunk, "eval_chunk_size": eval_chunk, "precision": precision,
                          "matmul_precision": str(cfg.engine.get("matmul_precision", "highest")),
                          "compile": bool(cfg.engine.get("compile", False))}}  # what auto chose, and how it ran
    if not trainer.is_global_zero:  # rank 0 writes the run's files
        return summary
    write_json(run_dir / "summary.json", summary)
    write_client_records(run_dir, module.reps[0].last_eval.get("results", {}))  # replicas: replica 0's at the top
    for i, rep in enumerate(module.reps[1:] if len(module.reps) > 1 else [], start=1):
        (run_dir / "replicas" / str(i)).mkdir(parents=True, exist_ok=True)
        write_client_records(run_dir / "replicas" / str(i), rep.last_eval.get("results", {}))
    if cfg.plots:
        _plots(run_dir, module, summary)
    for lg in loggers:
        if hasattr(lg, "log_summary"):
            lg.log_summary(summary, run_dir)
    return summary


def _chunk_sizes(cfg: DictConfig, backend, local, personal, task, data, device, p) -> tuple:
    """engine.chunk_size / eval_chunk_size, `auto` resolved from free memory (pfl.chunking)."""
    from pfl.chunking import auto_chunk

    chunk, eval_chunk = cfg.engine.chunk_size, cfg.engine.eval_chunk_size
    if backend.kind != "vmap":  # the loop holds one client at a time
        return (None if chunk == "auto" else chunk), (None if eval_chunk == "auto" else eval_chunk)
    params = task.init_params()
    if chunk == "auto":
        chunk = auto_chunk(local, params, data.train.train, device, cfg.clients_per_round * int(cfg.get("replicas", 1)),
                           "engine.chunk_size")
    if eval_chunk == "auto":
        n = max(len(data.heldout) if p.heldout_clients is None else min(p.heldout_clients, len(data.heldout)),
                min(p.train_clients or 0, len(data.train)))
        pop = data.heldout if len(data.heldout) else data.train
        eval_chunk = auto_chunk(personal, params, pop.train, device, n, "engine.eval_chunk_size", pop.test)
    return chunk, eval_chunk


def replica_config(cfg: DictConfig, r: int) -> DictConfig:
    """The configuration of replica r: the run's with seed + r (the data set's `seed: ${seed}` follows)."""
    from omegaconf import open_dict

    out = copy.deepcopy(cfg)
    with open_dict(out):
        out.seed = int(cfg.seed) + r
        out.replicas = 1
    return out


def build_replicas(cfg: DictConfig, data, task: Task) -> list[tuple[int, object, dict]]:
    """(seed, data, initial model parameters) of each replica of `replicas=R`: replica r's data and
    model are built exactly as a run with seed + r builds them (seed_everything, data set, model).
    Replicas whose data come out identical (a data set the seed does not change) share one copy."""
    out = [(int(cfg.seed), data, task.init_params())]
    for r in range(1, int(cfg.replicas)):
        c = replica_config(cfg, r)
        pl.seed_everything(c.seed, workers=False, verbose=False)
        d = flag_permuted_clients(build(c.dataset, path="dataset"))
        model = build(c.model, path="model", num_classes=d.num_classes, **d.info.get("model_kwargs", {}))
        if len(d.train) != len(data.train) or len(d.heldout) != len(data.heldout):
            raise ConfigError("replicas", cfg.replicas, "a data set whose population does not depend on the seed "
                              f"(replica {r} has {len(d.train)}/{len(d.heldout)} clients, replica 0 "
                              f"{len(data.train)}/{len(data.heldout)})")
        buffers = dict(model.named_buffers())
        if set(buffers) != set(task.buffers) or any(not torch.equal(buffers[k], task.buffers[k]) for k in buffers):
            raise ConfigError("replicas", cfg.replicas, "a model whose buffers do not depend on the seed (replicas "
                              "share one model skeleton)")
        out.append((c.seed, data if _same_data(d, data) else d,
                    {k: v.detach().clone() for k, v in model.named_parameters()}))
    pl.seed_everything(cfg.seed, workers=False, verbose=False)
    return out


def _same_data(a, b) -> bool:
    def same(x, y):
        return x.shape == y.shape and x.dtype == y.dtype and bool(torch.equal(x, y))

    pops = [(a.train, b.train), (a.heldout, b.heldout)]
    for pa, pb in pops:
        for sa, sb in ((pa.train, pb.train), (pa.test, pb.test)):
            if not (same(sa.x, sb.x) and same(sa.y, sb.y) and same(sa.counts, sb.counts)):
                return False
            if (sa.aug is None) != (sb.aug is None) or (sa.aug is not None and not same(sa.aug, sb.aug)):
                return False
        if pa.client_ids != pb.client_ids:
            return False
    return True


def run_summary(cfg: DictConfig, module: FederatedModule, backend: str, device, wall_time: float) -> dict:
    """summary.json: a single run's summary, or for replicas=R one per replica and their mean and std
    (pfl.engine.replicas.combine_summaries)."""
    if len(module.reps) == 1:
        return summarize(cfg, module, backend, device, wall_time)
    parts = [summarize(replica_config(cfg, i), _ReplicaView(module, i), backend, device, wall_time)
             for i in range(len(module.reps))]
    return combine_summaries(summarize(cfg, module, backend, device, wall_time), parts)


class _ReplicaView:
    """What `summarize` reads of a module, for replica i."""

    def __init__(self, module: FederatedModule, i: int):
        self._module, self._rep = module, module.reps[i]
        self.history, self.bytes_total = self._rep.history, self._rep.bytes_total
        self.track_history = self._rep.track_history

    def __getattr__(self, name):
        return getattr(self._module, name)


def check_model_fits(cfg: DictConfig, task: Task, data) -> None:
    """One forward and loss on two training examples: a model that cannot read the data set's
    inputs (or predict its labels) fails here with one line naming both, not in the first round."""
    split = data.train.train
    x, y = split.x[:2], split.y[:2]
    try:
        with torch.no_grad():
            task.loss(task.init_params(), x, y, torch.ones(len(x), dtype=torch.bool))
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        model = _choice("model") or cfg.model._target_
        raise ConfigError("model", model, f"a model for the inputs of dataset {cfg.dataset.name} (examples of shape "
                          f"{list(x.shape[1:])}, labels of shape {list(y.shape[1:])}, {data.num_classes} classes); "
                          f"model {cfg.model._target_} cannot read them: {first}") from None


def _choice(group: str) -> str | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None


def _distribution(cfg: DictConfig, device: torch.device):
    """(accelerator, devices, num_nodes, strategy) for pl.Trainer from `device` and `trainer.*`."""
    t = cfg.get("trainer") or {}
    accelerator = "gpu" if device.type == "cuda" else device.type
    devices, num_nodes = t.get("devices", 1), t.get("num_nodes", 1)
    if device.type == "cuda" and devices == 1:
        devices = [device.index or 0]
    return accelerator, devices, num_nodes, make_strategy(t.get("strategy", "auto"), devices, num_nodes, accelerator)


def _local_cache_dir() -> str:
    """Where local-only reference accuracies are kept across runs ($PFL_CACHE or ~/.cache/pfl)."""
    return str(Path(os.environ.get("PFL_CACHE") or Path.home() / ".cache" / "pfl") / "local_reference")


def _extra_callbacks(cfg: DictConfig) -> list:
    # sweeps add an Optuna pruning callback (see pfl.sweep)
    from pfl.engine import hooks

    return hooks.callbacks_for(cfg)


def _hydra_run_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    try:
        return HydraConfig.get().runtime.output_dir
    except ValueError:
        return str(Path("outputs") / time.strftime("%Y-%m-%d/%H-%M-%S"))


def _plots(run_dir: Path, module, summary: dict) -> None:
    """plots/*.png from the files written above (W&B uploads them in log_summary); never fails the run."""
    try:
        write_run_plots(run_dir)
        head = module.reps[0].last_eval.get("results", {}).get(module.personalization.headline)  # Acc_local's population
        if head is not None and head.local_accuracy is not None:
            scatter_plot(head, max(module.report_epochs), run_dir / "plots" / "scatter_local.png", summary["algorithm"])
    except Exception as exc:  # noqa: BLE001 - the results are already on disk; a plot must not fail the run
        log.warning("plots not written: %s (redraw: python -m pfl.report.run_plots %s)", exc, run_dir)
