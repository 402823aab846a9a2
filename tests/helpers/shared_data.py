"""Where the real data files beside the checkout are (../shared/data), for tests that need them.

$PFL_SHARED_DATA wins; else <repo>/../shared/data; else /work/shared/data.
Tests call `shared_path(...)`, which skips the test with the reason when absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def shared_root() -> Path | None:
    candidates = [os.environ.get("PFL_SHARED_DATA"), REPO.parent / "shared" / "data", "/work/shared/data"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None


def shared_path(name: str) -> Path:
    root = shared_root()
    if root is None or not (root / name).is_dir():
        pytest.skip(f"real data {name} not found (set PFL_SHARED_DATA to the folder holding {name}/; "
                    f"looked in $PFL_SHARED_DATA, {REPO.parent / 'shared' / 'data'}, /work/shared/data)")
    return root / name
