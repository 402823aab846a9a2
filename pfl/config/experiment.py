"""`build_experiment(cfg)`: every object a composed, validated config names, built once.

The result is a frozen `pfl.engine.experiment.Experiment`; the engine fits it
without reading the config again. Building is seeded: `seed_everything(seed)`,
then the data set, the model (its initial parameters), the replicas' own data
and models, in that order, so a run and its resume start from the same state.
"""

from __future__ import annotations

import logging

import copy
import dataclasses
import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from pfl.algorithms.local import LocalTrainer
from pfl.config.errors import ConfigError
from pfl.config.hooks import callbacks_for
from pfl.config.identity import run_info
from pfl.config.schema import build, logger_nodes, stage_names, trainer_settings, validate_population
from pfl.data.augment import flag_permuted_clients
from pfl.data.validate import check_data
from pfl.engine.distributed import make_strategy
from pfl.engine.experiment import Experiment, Stage, TrainerPlan
from pfl.engine.files import MetricsCSV
from pfl.engine.progress import progress_bar_enabled
from pfl.evaluation.settings import PersonalizationSettings
from pfl.execution import make_backend
from pfl.task import Task


def build_experiment(cfg: DictConfig) -> Experiment:
    """The run `cfg` describes (validated already: pfl.config.validate)."""
    pl.seed_everything(cfg.seed, workers=False, verbose=False)
    logging.getLogger("pfl").info("loading data set %s ...", cfg.dataset.get("name", "?"))  # LEAF: a minute
    data = flag_permuted_clients(build(cfg.dataset, path="dataset"))  # ζ-permuted clients augment, where the data set can
    if not data.info.get("validated"):  # a data set from outside pfl.data (its loaders validate their own)
        check_data(data)
    validate_population(cfg, len(data.train), len(data.heldout))
    model = build(cfg.model, path="model", num_classes=data.num_classes, **data.info.get("model_kwargs", {}))
    precision = (cfg.get("trainer") or {}).get("precision")
    task = Task(model, data.input_transform, data.ignore_index, data.augment, precision=precision)
    matmul = str(cfg.engine.get("matmul_precision", "highest"))
    torch.set_float32_matmul_precision(matmul)  # "high": TF32 on CUDA
    check_model_fits(cfg, task, data)
    local = LocalTrainer(task, build(cfg.client_opt, path="client_opt"))
    p_opt = cfg.personalization.client_opt
    personal = LocalTrainer(task, build(p_opt, path="personalization.client_opt")) if p_opt is not None else local
    stages = build_stages(cfg)
    device = resolve_device(str(cfg.device))
    p = PersonalizationSettings(**OmegaConf.to_container(cfg.personalization, resolve=True))
    replicas = build_replicas(cfg, data, task) if int(cfg.get("replicas", 1)) > 1 else None
    compile_ = bool(cfg.engine.get("compile", False))
    backend = make_backend(cfg.engine.backend, model, device, None, compile=compile_)
    chunk, eval_chunk = _chunk_sizes(cfg, backend, local, personal, task, data, device, p)
    return Experiment(
        run=run_info(cfg), data=data, model=model, task=task, stages=tuple(stages), local=local, personal=personal,
        backend=dataclasses.replace(backend, chunk_size=chunk), eval_chunk_size=eval_chunk, device=device,
        personalization=p, eval_every=int(cfg.eval_every), checkpoint_every=int(cfg.checkpoint_every),
        resume=cfg.resume, init_from=cfg.init_from, replicas=replicas,
        local_cache_dir=_local_cache_dir() if p.local_cache else None, loggers=tuple(logger_factories(cfg)),
        callbacks=tuple(callbacks_for(cfg)), trainer=trainer_plan(cfg, device), plots=bool(cfg.plots),
        count_flops=bool(cfg.engine.get("count_flops", True)),
        engine={"chunk_size": chunk, "eval_chunk_size": eval_chunk, "precision": precision,
                "matmul_precision": matmul, "compile": compile_})  # what auto chose, and how it ran


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
        return [Stage(alg, opt, rounds, names[0] + suffix) for suffix, alg, opt, rounds in parts]
    return [Stage(build(s.algorithm, path=f"stages.{i}.algorithm"), instantiate(s.server_opt), s.rounds, names[i])
            for i, s in enumerate(cfg.stages)]


def logger_factories(cfg: DictConfig) -> list:
    """One factory per selected logger but metrics.csv (always there): f(run, run_dir, resume_round) -> logger."""
    csv_target = f"{MetricsCSV.__module__}.{MetricsCSV.__qualname__}"
    out = []
    for key, node in logger_nodes(cfg):
        if node.get("_target_") == csv_target:
            continue
        path = "logger" if key == "_here_" else f"logger.{key}"
        folder = "logs" if key == "_here_" else key

        def make(run, run_dir: Path, resume_round, _node=node, _path=path, _folder=folder):
            return build(_node, drop=(), path=_path, run=run, run_dir=Path(run_dir), resume_round=resume_round,
                         save_dir=str(Path(run_dir) / _folder))
        out.append(make)
    return out


def trainer_plan(cfg: DictConfig, device: torch.device) -> TrainerPlan:
    """pl.Trainer's arguments from `device` and `trainer.*`."""
    t = cfg.get("trainer") or {}
    accelerator = "gpu" if device.type == "cuda" else device.type
    devices, num_nodes = t.get("devices", 1), t.get("num_nodes", 1)
    if device.type == "cuda" and devices == 1:
        devices = [device.index or 0]
    settings = {"enable_model_summary": False, "log_every_n_steps": 1, **trainer_settings(cfg)}
    bar = progress_bar_enabled(settings.pop("enable_progress_bar", None))
    return TrainerPlan(accelerator, devices, num_nodes, make_strategy(t.get("strategy", "auto"), devices, num_nodes,
                                                                      accelerator), settings, bar)


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


def _local_cache_dir() -> str:
    """Where local-only reference accuracies are kept across runs ($PFL_CACHE or ~/.cache/pfl)."""
    return str(Path(os.environ.get("PFL_CACHE") or Path.home() / ".cache" / "pfl") / "local_reference")
