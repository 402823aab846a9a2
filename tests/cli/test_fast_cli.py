"""The CLI's answers that start no run (--help, --cfg, completion, composition errors) import no torch or
Lightning: the schemas come from a description cached by the sources' hashes (pfl.config.schema_cache) and --help
is printed from one composition (pfl.cli_help)."""

import json
import os
import re
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from pfl.config import schema_cache
from pfl.config.resources import CONF_DIR
from tests.helpers import REPO

PROBE = """import runpy, sys
sys.argv = ["pfl", *sys.argv[1:]]
try:
    runpy.run_module("pfl", run_name="__main__")
except SystemExit as exc:
    print("exit", exc.code, file=sys.stderr)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "pytorch_lightning", "lightning_fabric"))
print("imported:", heavy[:3], file=sys.stderr)
"""


def test_every_schema_round_trips_through_its_description():
    entries = schema_cache._entries(CONF_DIR)
    assert {"schema", "pfl.algorithms.Reptile", "pfl.optim.ClientSGD"} <= set(entries)
    for name, cls in entries.items():
        desc = json.loads(json.dumps(schema_cache.describe(cls)))
        rebuilt = schema_cache.build(desc)
        assert schema_cache.describe(rebuilt) == desc, name
        assert OmegaConf.to_yaml(OmegaConf.structured(rebuilt)) == OmegaConf.to_yaml(OmegaConf.structured(cls)), name


def test_a_changed_source_names_another_cache_file(tmp_path):
    conf = tmp_path / "conf"
    (conf / "algorithm").mkdir(parents=True)
    (conf / "algorithm" / "a.yaml").write_text("x: 1\n")
    before = schema_cache.fingerprint(conf)
    (conf / "algorithm" / "a.yaml").write_text("x: 2\n")
    assert schema_cache.fingerprint(conf) != before


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("pfl_cache")
    old = os.environ.get("PFL_CACHE")
    os.environ["PFL_CACHE"] = str(cache)
    try:
        schema_cache._DONE.clear()
        assert schema_cache.register() is False  # a miss: built by importing the targets, then written
        assert len(list((cache / "schemas").glob("*.json"))) == 1
    finally:
        os.environ.pop("PFL_CACHE") if old is None else os.environ.__setitem__("PFL_CACHE", old)
    return cache


@pytest.mark.parametrize("args, code, shows", [
    (["--help"], None, "algorithm: "),
    (["--cfg", "job", "algorithm=reptile"], None, "_target_: pfl.algorithms.Reptile"),
    (["algorithm=fedavgg"], 2, "algorithm=fedavgg is not an option"),
    (["rounds=abc"], 2, "rounds=abc is not allowed"),
    (["-sc", "query=bash"], None, "algorithm="),
], ids=["help", "cfg", "bad-option", "bad-type", "completion"])
def test_answers_without_a_run_import_no_torch(warm_cache, tmp_path, args, code, shows):
    env = dict(os.environ, PYTHONPATH=str(REPO), PFL_CACHE=str(warm_cache), COMP_LINE="pfl algor")
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert shows in proc.stdout + proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]
    ended = re.search(r"^exit (\S+)$", proc.stderr, re.M)
    assert (ended and ended.group(1)) in ((str(code),) if code else (None, "0", "None")), proc.stderr[-2000:]
    assert "imported: []" in proc.stderr, proc.stderr[-2000:]
