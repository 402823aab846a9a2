"""Loggers for a run: metrics.csv always, plus the `logger` option's `_target_` (logger=wandb: Weights & Biases).

The target is called with the settings of its YAML and, where its signature names them, `cfg`,
`run_dir`, `resume_round` and `save_dir` (a Lightning logger's folder: the run directory)."""

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
    from pfl.config import build

    loggers = [MetricsCSV(run_dir, resume_round)]
    if cfg.logger.get("_target_") not in (None, f"{MetricsCSV.__module__}.{MetricsCSV.__qualname__}"):
        loggers.append(build(cfg.logger, path="logger", cfg=cfg, run_dir=Path(run_dir), resume_round=resume_round,
                             save_dir=str(run_dir)))
    return loggers


def resolved_config(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
