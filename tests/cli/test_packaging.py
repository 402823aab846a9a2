"""A wheel holds the whole package with its configs and sweep definitions, and runs from anywhere.

The wheel is built offline (`pip wheel --no-deps --no-build-isolation`, with the setuptools of
this environment) and unpacked instead of installed, so no package index is needed: the unpacked
copy is imported ahead of the checkout, with this environment's dependencies.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO, TINY

pytestmark = pytest.mark.skipif(importlib.util.find_spec("setuptools") is None,
                                reason="building a wheel offline needs setuptools in this environment")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    src = out / "src"  # a clean copy, as a fresh clone is: no build/ left from an earlier build
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                            "outputs", "multirun", "wandb", ".pytest_cache"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(src)], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PIP_NO_INDEX="1"))
    assert proc.returncode == 0, proc.stderr
    (whl,) = out.glob("*.whl")
    return whl


def _repo_files(pattern_root: str, suffix: str) -> set[str]:
    root = REPO / pattern_root
    return {p.relative_to(REPO).as_posix() for p in root.rglob(f"*{suffix}") if "__pycache__" not in p.parts}


@pytest.mark.slow  # builds a wheel
def test_wheel_holds_every_module_config_and_sweep(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = _repo_files("pfl", ".py") | _repo_files("hydra_plugins", ".py")
    assert modules - names == set(), "modules missing from the wheel (list new packages in pyproject.toml)"
    configs = {"pfl/" + f for f in _repo_files("conf", ".yaml") | _repo_files("sweeps", ".yaml")}
    assert configs - names == set(), "configs missing from the wheel"
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "pfl = pfl.cli:main" in entry


@pytest.mark.slow  # real processes (interpreter start-up dominates); runs in the full suite
def test_unpacked_wheel_runs_from_another_directory(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), WANDB_MODE="disabled")

    def run(*args, timeout=300):
        return subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True, text=True,
                              timeout=timeout)

    where = run("-c", "import pfl, pfl.config.resources as r; from pfl.sweep.definitions import names; "
                      "print(pfl.__file__, r.CONF_DIR, r.SWEEPS_DIR, ','.join(names()))")
    assert where.returncode == 0, where.stderr
    pkg, conf, sweeps, sweep_names = where.stdout.split()
    assert all(Path(p).is_relative_to(site) for p in (pkg, conf, sweeps)), where.stdout
    assert "fedavg_e_lr" in sweep_names.split(",")
    helped = run("-m", "pfl", "--help")
    assert helped.returncode == 0 and "algorithm: " in helped.stdout, helped.stderr
    plugins = run("-m", "pfl", "--info", "plugins")  # Hydra's scan finds the sweeper in the unpacked wheel
    assert "PflOptunaSweeper" in plugins.stdout.split("Sweeper:")[1].split("Launcher:")[0], plugins.stderr
    swept = run("-m", "pfl", "--cfg", "job", "+sweep=fedavg_e_lr")
    assert swept.returncode == 0 and "name: fedavg_e_lr" in swept.stdout, swept.stderr
    ran = run("-m", "pfl", *TINY, "rounds=2", "algorithm=reptile", "hydra.run.dir=out")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "reptile on synthetic" in ran.stdout and (work / "out" / "summary.json").is_file()
