"""Shared test helpers: compose the real config with tiny sizes, CPU, no network."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
# Tests run tiny models, several processes at a time (sweep workers, joblib, CLI runs): one
# thread each avoids oversubscribing the cores, which made torch 15-40x slower on a busy machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_SILENT", "true")

REPO = Path(__file__).resolve().parents[1]

import torch  # noqa: E402

torch.set_num_threads(1)

# a population small enough that a round takes milliseconds
TINY = [
    "dataset.num_clients=24",
    "dataset.train_clients=16",
    "dataset.max_examples=80",
    "dataset.dim=20",
    "rounds=4",
    "clients_per_round=4",
    "eval_every=2",
    "checkpoint_every=2",
    "personalization.train_clients=4",
    "personalization.curve_epochs=2",
    "personalization.epochs=[1,2]",
    "device=cpu",
]


def compose_cfg(overrides: list[str] | None = None, tiny: bool = True):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from pfl.cli import CONF_DIR
    from pfl.config import register

    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=(TINY if tiny else []) + list(overrides or []))
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture
def tiny_cfg():
    return compose_cfg


def run_cli(args: list[str], cwd: Path, timeout: float = 300):
    """`python -m pfl ARGS` in a subprocess; returns CompletedProcess."""
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(REPO), WANDB_MODE="disabled", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "pfl", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


SHARED_DATA = Path(os.environ.get("PFL_SHARED_DATA", REPO.parent / "shared" / "data"))
