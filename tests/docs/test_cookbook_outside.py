"""The README's cookbook, after the README's install (`pip install -e .`), from a directory outside the
checkout: every command composes and validates there (the configs, the sweeps and the sweeper are found
through the install, not the working directory), and one of them runs to the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig

import pytest

from tests.cli.test_editable_install import _editable_install, pytestmark as needs_setuptools  # noqa: F401
from tests.docs.test_commands import PLACEHOLDER, _split, commands
from tests.helpers import REPO, TINY

pytestmark = needs_setuptools

CHECK = """import json, site, sys
site.addsitedir(sys.argv[1])  # the editable install (as in tests/cli/test_editable_install.py)
sys.path.append(sys.argv[2])
from pfl.cli import precheck
from pfl.hydra_plugin import ensure_registered
ensure_registered()
print(json.dumps([[argv, precheck(argv)] for argv in json.loads(sys.argv[3])]))
"""


def cookbook() -> list[list[str]]:
    """The `python -m pfl` commands of the README's Cookbook section that a reader can run as written."""
    text = (REPO / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(text) if line.startswith("## Cookbook"))
    end = next(i for i, line in enumerate(text) if i > start and line.startswith("## "))
    out = []
    for where, args, error in commands(REPO / "README.md"):
        line = int(where.rsplit(":", 1)[1])
        if start < line <= end and error is None and not PLACEHOLDER.search(args.split("#")[0]):
            argv = _split(args)
            if not any(a.startswith("init_from=") for a in argv):  # names a run an earlier command makes
                out.append(argv)
    return out


def test_the_cookbook_is_found():
    found = cookbook()
    assert len(found) >= 15 and ["-m", "+sweep=fedavg_e_lr"] in found, found


@pytest.mark.slow  # an editable install built and two interpreters started: about 40 s of CPU
def test_the_readmes_cookbook_runs_from_outside_the_checkout(tmp_path):
    site = _editable_install(tmp_path, legacy=False)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"WANDB_MODE": "disabled"}
    purelib = sysconfig.get_paths()["purelib"]
    (tmp_path / "check.py").write_text(CHECK)
    proc = subprocess.run([sys.executable, "-S", str(tmp_path / "check.py"), str(site), purelib,
                           json.dumps(cookbook())], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == len(cookbook())
    assert [(argv, problem) for argv, problem in results if problem is not None] == []
    # one of them to the end, with the tiny sizes: AFML with ζ
    (tmp_path / "run.py").write_text("import runpy, site, sys\nsite.addsitedir(sys.argv[1]); sys.path.append(sys.argv[2])\n"
                                     "sys.argv = sys.argv[3:]\nrunpy.run_module('pfl', run_name='__main__', alter_sys=True)\n")
    ran = subprocess.run([sys.executable, "-S", str(tmp_path / "run.py"), str(site), purelib, "pfl", "algorithm=afml",
                          "zeta=0.4", *TINY, "rounds=2", "hydra.run.dir=out"], cwd=work, env=env, capture_output=True,
                         text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "afml on synthetic" in ran.stdout and (work / "out" / "summary.json").is_file()
    assert not (REPO / "out").exists()
