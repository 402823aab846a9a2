"""Shared test helpers: compose the real config with tiny sizes, CPU, no network.

`TINY` is the one definition of the tiny run overrides; `tiny(...)` derives the named
variants that some suites use (a different population, no checkpoints, ...) from it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# a population small enough that a round takes milliseconds
_TINY = {
    "dataset.num_clients": 24,
    "dataset.train_clients": 16,
    "dataset.max_examples": 80,
    "dataset.dim": 20,
    "rounds": 4,
    "clients_per_round": 4,
    "eval_every": 2,
    "checkpoint_every": 2,
    "personalization.train_clients": 4,
    "personalization.curve_epochs": 2,
    "personalization.epochs": "[1,2]",
    "device": "cpu",
    "plots": "false",  # PNGs are ~40% of a tiny run; the tests that check plots turn them on
    "engine.count_flops": "false",  # counting makes a tiny run ~2x slower; the tests of FLOPs turn it on
}
DROP = object()  # tiny(key=DROP): leave the key at the config's default


def tiny(changes: dict | None = None) -> list[str]:
    """The tiny overrides with `changes` ({key: value}; value DROP removes the key; new keys go last)."""
    merged = {**_TINY, **(changes or {})}
    return [f"{k}={v}" for k, v in merged.items() if v is not DROP]


TINY = tiny()

# named variants: the sizes some suites were written for (their expected numbers depend on them)
TINY_FAST = {  # two rounds, three clients, no checkpoints, no training-client evaluation
    "dataset.num_clients": 20, "dataset.train_clients": 15, "dataset.max_examples": 60, "dataset.dim": 10,
    "rounds": 2, "clients_per_round": 3, "personalization.train_clients": 0, "eval_every": 1,
    "checkpoint_every": 0, "device": DROP,
}
TINY_AFML = {  # the synthetic default dim (60), which AFML's expected byte counts use
    "dataset.num_clients": 16, "dataset.train_clients": 10, "dataset.max_examples": 60, "dataset.dim": DROP,
    "rounds": 3, "eval_every": 3, "personalization.train_clients": 2, "checkpoint_every": 0, "device": DROP,
}
TINY_PAPER2 = {
    "dataset.num_clients": 14, "dataset.train_clients": 8, "dataset.max_examples": 40, "dataset.dim": DROP,
    "rounds": 2, "eval_every": 2, "clients_per_round": 3, "personalization.train_clients": 0,
    "checkpoint_every": 0, "device": DROP, "dataset.min_examples": 10,
}
TINY_JIANG = {  # the presets name EMNIST; `dataset=synthetic` replaces it (and the model follows)
    "dataset.num_clients": 20, "dataset.train_clients": 14, "dataset.max_examples": 60, "dataset.dim": 12,
    "rounds": 2, "clients_per_round": 3, "eval_every": 100, "checkpoint_every": 0,
    "personalization.train_clients": 3, "personalization.heldout_clients": 5, "dataset": "synthetic",
}


def compose_cfg(overrides: list[str] | None = None, tiny: bool = True, return_hydra_config: bool = False):
    """The real config (conf/config.yaml) with TINY (when `tiny`) and then `overrides` applied."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from pfl.cli import CONF_DIR
    from pfl.config import register

    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose("config", overrides=(TINY if tiny else []) + list(overrides or []),
                           return_hydra_config=return_hydra_config)
    finally:
        GlobalHydra.instance().clear()


def run_cli(args: list[str], cwd: Path, timeout: float = 300):
    """`python -m pfl ARGS` in a subprocess; returns CompletedProcess."""
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(REPO), WANDB_MODE="disabled", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "pfl", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)

