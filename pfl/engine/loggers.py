"""Loggers for a run: metrics.csv always, Weights & Biases when logger=wandb."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pfl.engine.files import MetricsCSV

log = logging.getLogger("pfl")


def wandb_mode(requested: str) -> str:
    """auto: WANDB_MODE if set, else online only when an API key is configured, else offline (never blocks)."""
    if requested != "auto":
        return requested
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env:
        return {"dryrun": "offline", "run": "online"}.get(env, env)
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    if netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore"):
        return "online"
    return "offline"


def make_loggers(cfg: DictConfig, run_dir: Path, resume_round: int | None) -> list:
    loggers = [MetricsCSV(run_dir, resume_round)]
    if cfg.logger.kind == "wandb":
        from pfl.engine.wandb_logger import make_wandb_logger

        loggers.append(make_wandb_logger(cfg, run_dir, wandb_mode(cfg.logger.mode)))
    elif cfg.logger.kind != "csv":
        from pfl.config_errors import ConfigError

        raise ConfigError("logger.kind", cfg.logger.kind, "csv or wandb")
    return loggers


def resolved_config(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
