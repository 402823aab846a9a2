"""Sweeps work from an editable install, run from a directory outside the checkout.

setuptools' editable install maps packages through an import hook; Hydra finds plugins by listing the
folders of `hydra_plugins` with pkgutil, which sees the sweeper only when the folder itself is mapped
(pyproject.toml lists the namespace) or when pfl registers it before Hydra looks (pfl.hydra_plugin, for
installs mapped otherwise). The editable wheel is built offline with this environment's setuptools and
unpacked as a site directory that a fresh interpreter (`-S`: no other editable install's .pth) reads first.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.skipif(importlib.util.find_spec("setuptools") is None,
                                reason="building an editable wheel offline needs setuptools in this environment")

RUNNER = """import runpy, site, sys
site.addsitedir(sys.argv[1])  # the editable install's .pth first (its finder module's name is shared)
sys.path.append(sys.argv[2])  # the dependencies, without the .pth files of site-packages
sys.argv = sys.argv[3:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def _editable_install(root: Path, legacy: bool) -> Path:
    src = root / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                            "outputs", "multirun", "wandb", ".pytest_cache", "tests",
                                                            "docs", "experiments"))
    if legacy:  # an install that maps only the plugin's subpackage, as setuptools does when the namespace is not listed
        py = src / "pyproject.toml"
        py.write_text(py.read_text().replace('"hydra_plugins", "hydra_plugins.pfl_optuna_sweeper"',
                                             '"hydra_plugins.pfl_optuna_sweeper"'))
    build = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
                            "print(b.build_editable(sys.argv[1]))", str(root / "dist")], cwd=src,
                           capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr[-3000:]
    (whl,) = (root / "dist").glob("*.whl")
    site = root / "site"
    zipfile.ZipFile(whl).extractall(site)
    finder = next(site.glob("__editable__*finder.py")).read_text()
    assert str(src / "pfl") in finder  # the install points into the copy, not the checkout
    return site


@pytest.mark.slow  # an editable install and real processes
@pytest.mark.parametrize("legacy", [False, True], ids=["namespace-mapped", "subpackage-mapped"])
def test_sweeps_from_an_editable_install_outside_the_checkout(tmp_path, legacy):
    site = _editable_install(tmp_path, legacy)
    (tmp_path / "run.py").write_text(RUNNER)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"WANDB_MODE": "disabled"}

    def pfl(*args):
        return subprocess.run([sys.executable, "-S", str(tmp_path / "run.py"), str(site), sysconfig.get_paths()["purelib"],
                               "pfl", *args], cwd=work, env=env, capture_output=True, text=True, timeout=300)

    plugins = pfl("--info", "plugins")
    assert plugins.returncode == 0, plugins.stderr[-3000:]
    assert "PflOptunaSweeper" in plugins.stdout.split("Sweeper:")[1].split("Launcher:")[0]
    if not legacy:
        job = pfl("--cfg", "job", "+sweep=fedavg_e_lr")
        assert job.returncode == 0, job.stderr[-3000:]
        assert "  name: fedavg_e_lr" in job.stdout  # the sweep group: not the string "fedavg_e_lr"
