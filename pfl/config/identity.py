"""A run's identity, read once from the composed config and the running Hydra app: `run_info(cfg)`.

The names a dashboard groups and labels runs by (pfl.engine.wandb_logger): a
sweep's runs share its name; a multirun's jobs are named by what differs between
them (values swept on the command line, a sweep's search space and grid,
hydra.sweeper.params), with the algorithm first.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pfl.engine.experiment import RunInfo

SWEEP_VALUE = re.compile(r"^(range|choice|interval|tag|glob)\(|,")


def run_info(cfg: DictConfig) -> RunInfo:
    from pfl.config.schema import stage_names
    from pfl.config.settings import locate

    sweep = cfg.get("sweep")
    try:
        federated = bool(getattr(locate(str(cfg.algorithm._target_)), "federated", True))
    except Exception:  # noqa: BLE001 - a name for the dashboard only
        federated = True
    swept = swept_keys(cfg)
    multirun = _multirun_dir()
    group = None
    if multirun is not None:
        group = _experiment() or " ".join(["grid", ",".join(swept) or Path(multirun).name,
                                           "_".join(Path(multirun).parts[-2:])])
    return RunInfo(
        algorithm="+".join(stage_names(cfg)), dataset=str(cfg.dataset.name),
        model=str(cfg.model._target_).rsplit(".", 1)[-1], seed=int(cfg.seed), zeta=cfg.zeta,
        clients_per_round=int(cfg.clients_per_round), federated=federated,
        config=OmegaConf.to_container(cfg, resolve=True), config_yaml=OmegaConf.to_yaml(cfg, resolve=True),
        sweep_name=str(sweep.name) if sweep is not None and sweep.get("name") else None,
        sweep_trial=int(sweep.trial) if sweep is not None and sweep.get("trial") is not None else None,
        label=" ".join(_label(cfg, k, swept) for k in swept), multirun_group=group, output_root=multirun)


def swept_keys(cfg: DictConfig) -> list[str]:
    """Keys that differ between the jobs of this run's multirun or sweep: values swept on the command line
    (`seed=0,1,2`, `x=interval(0,1)`), the sweep's search space and grid, hydra.sweeper.params."""
    keys: list[str] = []
    sweep = cfg.get("sweep")
    if sweep is not None:
        keys += [str(k) for k in (sweep.get("grid") or {})] + [str(k) for k in (sweep.get("params") or {})]
    multirun = _multirun_dir()
    if multirun is not None:
        from hydra.core.hydra_config import HydraConfig

        keys += [str(k) for k in (HydraConfig.get().sweeper.get("params") or {})]
        saved = Path(multirun) / "multirun.yaml"
        task = []
        if saved.is_file():
            task = list(OmegaConf.load(saved).hydra.overrides.task or [])
        for o in task:
            key, _, value = str(o).partition("=")
            if SWEEP_VALUE.search(value) and not value.startswith(("[", "{", "'", '"')):
                keys.append(key.lstrip("+~"))
    keys = [k for k in dict.fromkeys(keys) if not k.startswith("hydra")]
    return sorted(keys, key=lambda k: (k != "algorithm", k))  # the algorithm first


def _label(cfg: DictConfig, key: str, keys: list[str]) -> str:
    """`afml` for algorithm=afml, `ζ=0.4`, `seed=1`, `lr=0.013` (the key's last part, unless two keys share it)."""
    if key == "algorithm":
        from pfl.config.schema import stage_names

        return "+".join(stage_names(cfg))
    from hydra.core.hydra_config import HydraConfig

    value = OmegaConf.select(cfg, key, default=None)
    if isinstance(value, DictConfig) and HydraConfig.initialized():  # a config group: its option
        value = HydraConfig.get().runtime.choices.get(key, value)
    if isinstance(value, float):
        value = f"{value:.4g}"
    last = key.rsplit(".", 1)[-1]
    short = last if sum(k.rsplit(".", 1)[-1] == last for k in keys) == 1 else key
    return f"{'ζ' if short == 'zeta' else short}={value}"


def _multirun_dir() -> str | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return str(HydraConfig.get().sweep.dir)


def _experiment() -> str | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.choices.get("experiment") if HydraConfig.initialized() else None
