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


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(config, items):
    """The fast loop (`pytest -m "not slow"`) runs every test function at its first parameter; its other
    parameters (every algorithm of the contract suites, every row of a bad-input table) are `slow`
    and run in the full suite. A newcomer's own case runs fast with `-k`: `pytest tests/algorithms -k myalg`."""
    long = {id(i) for i in items if i.get_closest_marker("slow")}  # marked in the test file: real processes, long runs
    seen = set()
    for item in items:
        fn = (item.path, getattr(item, "originalname", item.name))
        if getattr(item, "callspec", None) is not None and fn in seen:
            item.add_marker(pytest.mark.slow)
        seen.add(fn)
    # the long tests first (stable otherwise): the workers then end on short tests together instead of one
    # worker finishing a 90-second test alone (the full suite's wall time on 2 cores)
    items.sort(key=lambda i: id(i) not in long)
