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
    (["zeta=2"], 2, "error: zeta=2.0 is not allowed: expected a number in [0, 1]"),
    (["algorithm=afml", "algorithm.beta=-1"], 2, "error: algorithm.beta=-1.0 is not allowed: expected a number >= 0"),
    (["-m", "seed=0,1", "personalization.heldout_clients=0"], 2, "personalization.heldout_clients=0 is not allowed"),
], ids=["help", "cfg", "bad-option", "bad-type", "completion", "bad-value", "bad-algorithm-value", "bad-value-multirun"])
def test_answers_without_a_run_import_no_torch(warm_cache, tmp_path, args, code, shows):
    env = dict(os.environ, PYTHONPATH=str(REPO), PFL_CACHE=str(warm_cache), COMP_LINE="pfl algor")
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert shows in proc.stdout + proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]
    ended = re.search(r"^exit (\S+)$", proc.stderr, re.M)
    assert (ended and ended.group(1)) in ((str(code),) if code else (None, "0", "None")), proc.stderr[-2000:]
    assert "imported: []" in proc.stderr, proc.stderr[-2000:]


PROBES = [-1, 0, 0.5, 1, 2, 3, 10**6, -0.5, "x", "", "auto", None, True, False, [1], "cpu"]


def test_every_described_rule_rebuilds_the_same_rule_and_a_valid_config_passes_the_quick_check():
    from pfl.config.quick_check import quick_check
    from pfl.config.settings import locate, rule_of, rules
    from tests.helpers import compose_cfg

    described = schema_cache._rules(schema_cache._entries(CONF_DIR))
    assert described["schema"]["zeta"] == ["number", 0, None, 1, None]
    assert described["pfl.algorithms.AFML"]["beta"] is not None
    count = 0
    for name, specs in described.items():
        if name in ("schema", "engine", "trainer", "personalization"):
            continue
        own = rules(locate(name))
        for key, spec in specs.items():
            if spec is None:
                continue
            rebuilt, count = rule_of(json.loads(json.dumps(spec))), count + 1
            assert rebuilt.allowed == own[key].allowed, (name, key)
            assert [rebuilt.ok(v, {}) for v in PROBES] == [own[key].ok(v, {}) for v in PROBES], (name, key)
    assert count >= 50  # the algorithms', optimizers', data sets' and models' settings
    for option in ("fedavg", "afml", "reptile", "ditto", "personalized_fedavg"):
        overrides = [f"algorithm={option}"] if option != "personalized_fedavg" else [f"experiment={option}"]
        quick_check(compose_cfg(overrides), described)  # no false alarm on a shipped config
