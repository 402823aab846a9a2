"""Test session settings (CPU, one thread, no network) and the shared fixtures; helpers live in tests/helpers."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
# Tests run tiny models, several processes at a time (sweep workers, joblib, CLI runs): one
# thread each avoids oversubscribing the cores, which made torch 15-40x slower on a busy machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_SILENT", "true")

import torch  # noqa: E402

torch.set_num_threads(1)

from tests.helpers import TINY, compose_cfg  # noqa: E402


@pytest.fixture
def tiny_overrides():
    """The tiny run overrides (a fresh list; tests.helpers.tiny(...) gives the named variants)."""
    return list(TINY)


@pytest.fixture
def tiny_cfg():
    return compose_cfg
