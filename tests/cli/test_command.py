"""The `pfl` command: --version, and Hydra's shell completion for the command itself."""

import os
import subprocess
import sys

import pfl
from tests.helpers import REPO

AS_PFL = "import sys; sys.argv[0] = 'pfl'; from pfl.cli import main; main()"  # what the console script runs


def _run(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    full = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, env=full, cwd="/")


def test_version_prints_the_package_version():
    for args in (["-m", "pfl", "--version"], ["-c", AS_PFL, "--version"]):
        proc = _run(args)
        assert proc.returncode == 0 and proc.stdout.startswith(f"pfl {pfl.__version__} "), proc.stdout + proc.stderr


def test_shell_completion_for_the_pfl_command():
    proc = _run(["-c", AS_PFL, "-sc", "install=bash"])
    assert proc.returncode == 0, proc.stderr
    assert "hydra_bash_completion" in proc.stdout and proc.stdout.rstrip().endswith("hydra_bash_completion pfl")
    proc = _run(["-c", AS_PFL, "-sc", "query=bash"], env={"COMP_LINE": "pfl logger=", "COMP_POINT": "11"})
    assert set(proc.stdout.split()) >= {"logger=csv", "logger=wandb", "logger=tensorboard", "logger=mlflow"}
