"""Weights & Biases logging through Lightning's WandbLogger, offline without a key."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

log = logging.getLogger("pfl")


class PflWandbLogger(WandbLogger):
    """WandbLogger that also receives the final summary, per-client tables and plots."""

    def log_summary(self, summary: dict, run_dir: Path) -> None:
        import wandb

        run = self.experiment
        for k, v in _flatten(summary).items():
            run.summary[k] = v
        for png in sorted(Path(run_dir).glob("plots/*.png")):
            run.log({f"plots/{png.stem}": wandb.Image(str(png))})
        for table in sorted(Path(run_dir).glob("clients_*.csv")):
            import csv

            with open(table, newline="") as f:
                rows = list(csv.reader(f))
            if rows:
                run.log({f"tables/{table.stem}": wandb.Table(columns=rows[0], data=rows[1:])})
        if self._offline:
            log.info("W&B run saved offline; upload with: wandb sync %s", run.dir.rsplit("/files", 1)[0])
        run.finish()


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def make_wandb_logger(cfg: DictConfig, run_dir: Path, mode: str) -> WandbLogger:
    os.environ.setdefault("WANDB_SILENT", "true")
    alg = cfg.algorithm.name if cfg.stages is None else "+".join(str(s.get("name", "")) for s in cfg.stages)
    tags = list(cfg.logger.tags) + [f"algorithm:{alg}", f"dataset:{cfg.dataset.name}", f"zeta:{cfg.zeta}"]
    return PflWandbLogger(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        group=cfg.logger.group,
        tags=tags,
        save_dir=str(run_dir),
        offline=mode == "offline",
        mode=mode if mode == "disabled" else None,
        config=OmegaConf.to_container(cfg, resolve=True),
        name=Path(run_dir).name,
    )
