"""Typed configuration: schemas, start-up validation, building objects from config nodes.

- The top-level schema (`Config`, stored as `schema`, first in conf/config.yaml's
  defaults) types every top-level key, so a misspelt key or a value of the wrong
  type fails while the config is composed.
- Each option of a group (conf/algorithm/reptile.yaml, ...) extends the typed
  schema of its class or function through its defaults list,
  `- /pfl.algorithms.Reptile@_here_` (a ConfigStore entry named by the target), and
  sets only what differs from the class's defaults. `register` stores those schemas:
  it reads the targets named in conf/, so a new option (or a copy under a new name)
  needs no other edit.
- `validate` checks every value against the `setting(...)` rules of its class
  (pfl.config.settings) and names the real config path (`stages.1.algorithm.local_steps`).
- An algorithm's name is its option (`algorithm=reptile` -> "reptile"): `algorithm_name`.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, List, Optional

import yaml
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from pfl.config.errors import ConfigError, UnknownSetting, check, is_int, is_number
from pfl.evaluation.settings import PersonalizationSettings
from pfl.execution import BACKENDS  # defined once, beside the backends
from pfl.config.resources import CONF_DIR, SWEEPS_DIR
from pfl.config.settings import boolean, check_values, integer, locate, number, one_of, optional, schema, setting, validate_node
from pfl.config.quick_check import TOP, logger_nodes, target_nodes  # noqa: F401 - logger_nodes: pfl.config's name
from pfl.config.sweep import SweepSettings


def _device_ok(v) -> bool:
    return isinstance(v, str) and (v in ("auto", "cpu", "cuda", "mps") or v.startswith("cuda:"))


def _chunk_ok(v) -> bool:
    return v is None or v == "auto" or (is_int(v) and v >= 1)


@dataclass
class EngineConfig:
    backend: str = setting("auto", one_of(*BACKENDS))
    # clients per vmap call in training (null: the whole cohort; auto: from free device memory, pfl.chunking)
    chunk_size: Any = setting(None, check=_chunk_ok, allowed="null, auto or an integer >= 1")
    eval_chunk_size: Any = setting(64, check=_chunk_ok, allowed="null, auto or an integer >= 1")  # clients per vmap call during evaluation
    # float32 matmuls: torch.set_float32_matmul_precision; "high" lets CUDA use TF32 (Ampere and later)
    matmul_precision: str = setting("highest", one_of("highest", "high", "medium"))
    compile: bool = setting(False, check=lambda v: isinstance(v, bool), allowed="true or false")  # torch.compile the vmapped client step
    # FLOPs of each stage's first round (torch's FlopCounterMode: that round runs ~2x slower; false: not counted)
    count_flops: bool = setting(True, check=lambda v: isinstance(v, bool), allowed="true or false")


@dataclass
class TrainerConfig:
    """pl.Trainer's settings (Lightning's names). Any other pl.Trainer argument is passed through with
    `+trainer.NAME=VALUE` (e.g. +trainer.profiler=simple); a name pl.Trainer does not have, or one that
    pfl sets itself (TRAINER_OWNED), stops the run at start-up."""
    devices: Any = 1  # processes per node (Lightning's name); > 1: each rank trains its share of the cohort
    num_nodes: int = setting(1, integer(ge=1))
    strategy: Any = "auto"  # auto/ddp: pfl.engine.distributed.RoundDDPStrategy when several processes run
    precision: Optional[Any] = None  # null: Lightning's default (32-true); or 32-true, bf16-mixed, 16-mixed
    enable_progress_bar: Optional[bool] = None  # null: only on a terminal and without TQDM_DISABLE=1
    log_every_n_steps: int = setting(1, integer(ge=1, note="training rows every this many rounds; "
                                                         "evaluation rows always"))


#: pl.Trainer arguments that pfl sets from its own settings (which one to use instead)
TRAINER_OWNED = {
    "accelerator": "device=cpu|cuda|auto", "max_steps": "rounds", "max_epochs": "rounds", "min_steps": "rounds",
    "min_epochs": "rounds", "max_time": "rounds", "logger": "logger=[csv,wandb,...]",
    "callbacks": "callbacks=[{_target_: ...}]", "enable_checkpointing": "checkpoint_every",
    "default_root_dir": "hydra.run.dir", "num_sanity_val_steps": None, "limit_train_batches": "rounds",
    # the round steps the server optimizer itself (manual optimization): Lightning refuses these
    "gradient_clip_val": None, "gradient_clip_algorithm": None, "accumulate_grad_batches": None,
}


def trainer_settings(cfg: DictConfig) -> dict:
    """`trainer.*` for pl.Trainer, without the distribution keys (pfl.config.experiment.trainer_plan) and unset values."""
    t = _plain(cfg.get("trainer")) or {}
    return {k: v for k, v in t.items() if k not in ("devices", "num_nodes", "strategy") and v is not None}


def _check_replicas(cfg: DictConfig) -> None:
    """replicas > 1 runs in one process (pfl.engine.replicas); what it does not cover stops here."""
    r = cfg.get("replicas", 1)
    if r is None or int(r) <= 1:
        return
    devices = (cfg.get("trainer") or {}).get("devices", 1)
    check(devices in (1, "1", None) and int((cfg.get("trainer") or {}).get("num_nodes", 1) or 1) == 1,
          "replicas", r, "1 when trainer.devices or trainer.num_nodes is above 1 (replicas run in one process; "
          "use seeds as separate runs there)")


_PRECISIONS = ("32", "32-true", "bf16", "bf16-mixed", "16", "16-mixed")


def _check_trainer(node: dict) -> None:
    import difflib

    from pytorch_lightning.trainer.trainer import Trainer

    params = [p for p in inspect.signature(Trainer.__init__).parameters if p != "self"]
    for key, value in node.items():
        if key == "precision" and str(value) in ("64", "64-true", "double"):
            raise ConfigError("trainer.precision", value, "null, 32-true, 16-mixed or bf16-mixed (the client data "
                              "stay float32, so 64-true cannot run)")
        if key == "precision" and value is not None and str(value) not in _PRECISIONS:
            raise ConfigError("trainer.precision", value, "null, 32-true, bf16-mixed or 16-mixed (parameters stay "
                              "float32; the client computation autocasts: pfl.task.Task)")
        if key in TRAINER_OWNED:
            use = TRAINER_OWNED[key]
            raise ConfigError(f"trainer.{key}", value, f"nothing: pfl sets it{f' (use {use})' if use else ''}")
        if key not in params:
            near = difflib.get_close_matches(key, params, n=1)
            raise ConfigError(f"trainer.{key}", value, "a pl.Trainer setting" + (f" (did you mean trainer.{near[0]}?)"
                              if near else " (e.g. precision, enable_progress_bar, log_every_n_steps, profiler)"))


@dataclass
class Config:
    dataset: Any = MISSING
    model: Any = MISSING
    algorithm: Any = MISSING
    server_opt: Any = MISSING
    client_opt: Any = MISSING
    logger: Any = MISSING
    seed: int = setting(0, integer(ge=0, le=2**32 - 1, note="the seed generators accept"))
    replicas: int = setting(1, integer(ge=1, note="independently seeded copies (seeds seed..seed+R-1) in one run"))
    rounds: int = setting(100, integer(ge=1))
    clients_per_round: int = setting(10, integer(ge=1))
    zeta: float = setting(1.0, number(ge=0, le=1))
    eval_every: int = setting(25, integer(ge=1))
    checkpoint_every: int = setting(10, integer(ge=0, note="0: only at the end"))
    resume: Any = setting(False, check=lambda v: v in (True, False, "auto"),
                          allowed="true (continue the run in hydra.run.dir), false or auto (continue if there is a checkpoint, else start)")
    overwrite: bool = setting(False, boolean())  # a new run may replace the run already in hydra.run.dir
    init_from: Optional[str] = setting(None, check=lambda v: v is None or Path(v).exists(),
                                       allowed="null or an existing run directory / checkpoint file to start from")
    device: str = setting("auto", check=_device_ok, allowed="auto, cpu, cuda, cuda:N or mps")
    stages: Optional[Any] = None
    callbacks: List[Any] = field(default_factory=list)  # extra Lightning callbacks: [{_target_: ..., ...}]
    plots: bool = setting(True, boolean())  # draw plots/*.png at the end (about a second; off in large sweeps)
    personalization: PersonalizationSettings = field(default_factory=PersonalizationSettings)
    engine: EngineConfig = field(default_factory=EngineConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    # an Optuna sweep (python -m pfl -m +sweep=NAME): untyped here, so that the sweeper can create the node in a
    # trial's job (`++sweep={...}`, also where the config has none); validate() checks it (pfl.config.sweep)
    sweep: Optional[Any] = None
    # lightning-hydra-template's key: the metric an Optuna sweep optimizes (a metric name such as
    # heldout/pers_acc_5 or a dotted path into summary.json; a list for several objectives); sweep.objectives wins
    optimized_metric: Optional[Any] = None


# -- schemas of the group options -------------------------------------------------

def _model_args_from_data() -> tuple[str, ...]:
    from pfl.models import FROM_DATA

    return FROM_DATA


#: per group: (arguments given at run time, not settings; keys the config carries beside the settings)
GROUP_SCHEMA = {
    "model": (_model_args_from_data, {}),
    "dataset": (lambda: (), {"name": str}),
    "logger": (lambda: ("run", "run_dir", "resume_round", "save_dir"), {}),
}


def _yaml(path: Path) -> dict:
    """A config file's contents (read only: shared between callers), parsed once per version of the file."""
    st = path.stat()
    return _parsed(str(path), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=512)
def _parsed(path: str, mtime_ns: int, size: int) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def schema_targets(path: Path) -> list[str]:
    """Targets whose schema a YAML file extends (`- /<target>@_here_`, or `- /<target>@<key>` for an option
    that puts its node under a key of the group, as logger options do: `logger=[csv,wandb]`)."""
    out = []
    for entry in _yaml(path).get("defaults") or []:
        if isinstance(entry, str) and entry.startswith("/") and "@" in entry:
            target = entry[1:].split("@", 1)[0]
            if "/" not in target:
                out.append(target)
    return out


def option_target(group: str, option: str) -> str | None:
    """The `_target_` an option of a group builds (from its YAML, without composing)."""
    path = CONF_DIR / group / f"{option}.yaml"
    if not path.is_file():
        return None
    data = _yaml(path)
    targets = schema_targets(path)
    return data.get("_target_") or (targets[0] if targets else None)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@lru_cache(maxsize=None)
def _schema(target: str, group: str):
    runtime, extra = GROUP_SCHEMA.get(group, (lambda: (), {}))
    return schema(target, exclude=runtime(), extra=extra)


_REGISTERED: set[str] = set()  # conf dirs whose schemas are in the ConfigStore (a process-wide singleton)


def register(conf_dir: str | Path | None = None) -> None:
    """Store the top-level schema and the schema of every target the configs name (default: CONF_DIR).
    Once per directory and process: the CLI's pre-check and Hydra's own run both call it, and each
    call reads every YAML file and imports every target."""
    key = str(Path(conf_dir or CONF_DIR).resolve())
    if key in _REGISTERED and "schema.yaml" in ConfigStore.instance().repo:
        return
    cs = ConfigStore.instance()
    cs.store(name="schema", node=Config)
    for group_dir in sorted(p for p in Path(conf_dir or CONF_DIR).iterdir() if p.is_dir()):
        for path in sorted(group_dir.glob("*.yaml")):
            for target in schema_targets(path):
                try:
                    node = _schema(target, group_dir.name)
                except Exception:  # noqa: BLE001 - an unimportable target: composing reports the missing schema
                    continue
                cs.store(name=target, node=node, provider="pfl")  # a root config named by its target
    _REGISTERED.add(key)


# -- names ------------------------------------------------------------------------

def name_of(algorithm_node, choice: str | None = None) -> str:
    """The conf/algorithm option that builds this node's target: `choice` unless that
    option builds another target, else the one option with this target, else the class
    name in lower case."""
    target = algorithm_node.get("_target_")
    if choice and option_target("algorithm", choice) in (target, None):
        return choice
    matches = [o for o in options("algorithm") if option_target("algorithm", o) == target]
    if len(matches) == 1:
        return matches[0]
    short = str(target).rsplit(".", 1)[-1].lower()
    return short if short in matches or not matches else matches[0]


def algorithm_name(cfg: DictConfig) -> str:
    """The name of the run's algorithm: its group choice (`algorithm=reptile` -> "reptile"), read from
    the config's hydra node (compose(..., return_hydra_config=True)) or the running Hydra app; without
    either (a plain compose), the conf/algorithm option that builds the same _target_."""
    hydra_node = cfg.get("hydra")
    if hydra_node is not None and "runtime" in hydra_node and hydra_node.runtime.choices.get("algorithm"):
        return str(hydra_node.runtime.choices.algorithm)
    from hydra.core.hydra_config import HydraConfig

    choice = HydraConfig.get().runtime.choices.get("algorithm") if HydraConfig.initialized() else None
    return name_of(cfg.algorithm, choice)


def stage_names(cfg: DictConfig) -> list[str]:
    """Each stage's name: its own `name` key, else its algorithm's option."""
    if cfg.stages is None:
        return [algorithm_name(cfg)]
    return [str(s.get("name") or name_of(s.algorithm)) for s in cfg.stages]


# -- validation -------------------------------------------------------------------

def _plain(node) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node


def validate(cfg: DictConfig) -> None:
    """Range checks on the composed config (types were checked by the schemas), and no key the schema
    lacks: `+algoritm=reptile` adds a key that nothing reads, so it is refused, with the nearest key."""
    known = [f.name for f in dataclasses.fields(Config)]
    for path, node, names in (("", cfg, known + ["hydra"]),
                              ("personalization.", cfg.personalization, [f.name for f in dataclasses.fields(PersonalizationSettings)]),
                              ("engine.", cfg.engine, [f.name for f in dataclasses.fields(EngineConfig)])):
        # (trainer.* passes other pl.Trainer arguments through: _check_trainer names the unknown ones)
        for k in node:
            if k not in names:
                raise UnknownSetting(path + str(k), _plain(node[k]), names,
                                     f"the keys of {path[:-1]} are listed by `python -m pfl --cfg job -p {path[:-1]}`"
                                     if path else "the top-level keys are listed by `python -m pfl --cfg job`")
    top = {k: _plain(cfg.get(k)) for k in TOP}
    check_values(Config, top, "")
    check_values(EngineConfig, _plain(cfg.engine), "engine.")
    _check_replicas(cfg)
    if cfg.get("sweep") is not None:
        from pfl.config.objectives import check_objectives

        # one line for a misspelt key or a bad value; an objective that no trial can produce: refused before the first
        check_objectives(cfg, SweepSettings.from_cfg(cfg.sweep).objectives)
    if cfg.get("trainer") is not None:
        _check_trainer(_plain(cfg.trainer))
        check_values(TrainerConfig, {k: v for k, v in _plain(cfg.trainer).items()
                                     if k in TrainerConfig.__dataclass_fields__}, "trainer.")
    check_values(PersonalizationSettings, _plain(cfg.personalization), "personalization.")
    if cfg.stages is not None:
        check(isinstance(cfg.stages, ListConfig) and len(cfg.stages) >= 1, "stages", _plain(cfg.stages),
              "null or a list of {name, algorithm, server_opt, rounds}")
        for i, s in enumerate(cfg.stages):
            check("rounds" in s and is_int(s.rounds) and s.rounds >= 1, f"stages.{i}.rounds", s.get("rounds"),
                  "an integer >= 1")
    given = [k for k in _model_args_from_data() if k in cfg.model]
    if given:  # the run passes these from the data set (pfl.models.FROM_DATA); a value here would collide
        check(False, f"model.{given[0]}", _plain(cfg.model[given[0]]),
              f"nothing: dataset {cfg.dataset.name} supplies {given[0]} to the model (remove +model.{given[0]})")
    for path, node in target_nodes(cfg):
        validate_node(_plain(node), path)
    for key, opt in [("server_opt", cfg.server_opt)] + [(f"stages.{i}.server_opt", s.get("server_opt"))
                                                         for i, s in enumerate(cfg.stages or [])]:
        if opt is None:
            continue
        if "lr" in opt:
            check(is_number(opt.lr) and opt.lr > 0, f"{key}.lr", opt.lr, "a number > 0")
        if "momentum" in opt:
            check(is_number(opt.momentum) and 0 <= opt.momentum < 1, f"{key}.momentum", opt.momentum, "a number in [0, 1)")


def validate_population(cfg: DictConfig, num_train: int, num_heldout: int) -> None:
    check(cfg.clients_per_round <= num_train, "clients_per_round", cfg.clients_per_round,
          f"at most the training population of {cfg.dataset.name} ({num_train} clients)")


# -- building -----------------------------------------------------------------------

def build(node, drop=("name",), path: str | None = None, **runtime):
    """Instantiate a config node. `runtime` kwargs go to the target when its signature
    names them (a model's num_classes); errors name `path` (the node's config key)."""
    cfg = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k not in drop}
    target = cfg.pop("_target_")
    partial = cfg.pop("_partial_", False)
    fn = locate(target)
    params = inspect.signature(fn).parameters
    accepts_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    extra = {k: v for k, v in runtime.items() if k in params}
    unknown = [k for k in cfg if k not in params and not accepts_all]
    if unknown:
        key = f"{path}.{unknown[0]}" if path else unknown[0]
        raise ConfigError(key, cfg[unknown[0]], f"a setting of {target} ({', '.join(p for p in params if p != 'self')})")
    if partial:
        return lambda *a, **kw: fn(*a, **{**cfg, **extra, **kw})
    try:
        return fn(**cfg, **extra)
    except ConfigError as exc:  # a setting's rule: name the real config path
        prefix = exc.key.split(".", 1)
        if path and len(prefix) == 2 and prefix[1] in cfg and type(exc) is ConfigError:  # a DataError's line is whole
            raise ConfigError(f"{path}.{prefix[1]}", exc.value, exc.allowed) from None
        raise


__all__ = ["CONF_DIR", "Config", "ConfigError", "SWEEPS_DIR", "algorithm_name", "build", "register", "stage_names",
           "validate", "validate_population"]
