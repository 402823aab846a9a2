"""Where the configs (conf/) and sweep definitions (sweeps/) are.

A wheel or `pip install .` ships them inside the package (pfl/conf, pfl/sweeps:
pyproject.toml maps the repository's top-level conf/ and sweeps/ there); in a
checkout (editable install, PYTHONPATH) they are the folders beside pfl/.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent.parent  # pfl/


def _resource_dir(name: str) -> Path:
    inside = _PKG / name
    return inside if inside.is_dir() else _PKG.parent / name


CONF_DIR = _resource_dir("conf")
SWEEPS_DIR = _resource_dir("sweeps")
