"""docs/extending.md runs as written: its examples pass the contract checks.

Every fenced block of the guide marked ```python file=PATH or ```yaml file=PATH is written to PATH
in a temporary directory: the YAMLs into a copy of conf/, the modules into the package's folders
(appended to `pfl.algorithms.__path__`, `pfl.data.__path__`, `pfl.models.__path__`, so they import
as `pfl.algorithms.<name>` in this process), and the config helpers are pointed at the copy. Then
the guide's new algorithm passes the algorithm contract (vmap == sequential, exact resume, bytes
derived from what it sends: tests/helpers/contract.py), its data set composes with the default model
its YAML names and passes the data set checks, its model passes the model contract on that data set,
and every `python -m pfl` command of the guide composes and validates.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

import pfl.algorithms
import pfl.cli
import pfl.config.schema
import pfl.data
import pfl.models
from pfl.config import validate
from pfl.config.resources import CONF_DIR
from tests.cli import test_settings as option_rules
from tests.data import test_configs as data_configs
from tests.docs.test_commands import PLACEHOLDER, commands
from tests.helpers import DROP, compose_cfg
from tests.helpers.contract import (check_bytes, check_resume_equals_uninterrupted, check_vmap_equals_sequential,
                                    contract_run, resumed_run)
from tests.models import test_contract as model_contract

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "extending.md"
BLOCK = re.compile(r"^```(\w+) file=(\S+)\n(.*?)^```$", re.M | re.S)


def guide_files() -> dict[str, str]:
    """{path: text} of the guide's `file=` blocks."""
    return {path: text for _, path, text in BLOCK.findall(GUIDE.read_text())}


def new_options() -> dict[str, str]:
    """{group: option} of the YAMLs the guide writes (conf/<group>/<option>.yaml)."""
    return {Path(p).parent.name: Path(p).stem for p in guide_files() if p.startswith("conf/")}


@pytest.fixture(scope="module")
def guide(tmp_path_factory):
    """The guide's files written into a copy of conf/ and beside the package, in use for the module's tests."""
    import shutil

    root = tmp_path_factory.mktemp("guide")
    shutil.copytree(CONF_DIR, root / "conf")
    files = guide_files()
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    modules = [rel[:-3].replace("/", ".") for rel in files if rel.endswith(".py")]
    with pytest.MonkeyPatch.context() as mp:
        for pkg in (pfl.algorithms, pfl.data, pfl.models):
            mp.setattr(pkg, "__path__", [*pkg.__path__, str(root / pkg.__name__.replace(".", "/"))])
        conf = root / "conf"
        for module, value in ((pfl.cli, str(conf)), (pfl.config.schema, conf), (data_configs, str(conf))):
            mp.setattr(module, "CONF_DIR", value)
        importlib.invalidate_caches()
        yield new_options()
    for name in modules:
        sys.modules.pop(name, None)


def test_the_guide_adds_an_algorithm_a_data_set_and_a_model_under_new_names():
    files = guide_files()
    assert set(new_options()) == {"algorithm", "dataset", "model"}, sorted(files)
    assert len([p for p in files if p.endswith(".py")]) == 3, sorted(files)
    for rel in files:
        assert not (REPO / rel).exists(), f"the guide's {rel} would overwrite a shipped file: give it a new name"


def test_the_guide_options_follow_the_config_rules(guide, monkeypatch):
    monkeypatch.setattr(option_rules, "CONF_DIR", pfl.config.schema.CONF_DIR)
    for group, option in guide.items():
        option_rules.test_every_option_extends_its_targets_schema_and_sets_only_what_differs(group, option)


def test_the_guide_algorithm_passes_the_contract(guide, tmp_path):
    name = guide["algorithm"]
    runs = {b: contract_run(name, b, tmp_path / b) for b in ("vmap", "sequential")}
    assert runs["vmap"].summary["algorithm"] == name
    check_vmap_equals_sequential(runs["vmap"], runs["sequential"])
    check_resume_equals_uninterrupted(runs["vmap"], resumed_run(name, tmp_path / "resumed"))
    check_bytes(runs["vmap"])


def test_the_guide_data_set_and_model(guide, monkeypatch):
    dataset, model = guide["dataset"], guide["model"]
    data_configs.test_dataset_option_composes_with_its_default_model(dataset)
    default = data_configs.default_model(dataset)
    # the model contract checks a model on each data set that selects its class (datasets_for): so the default
    # model is checked on the new data set with no edit
    target = model_contract._model_target
    assert target((f"dataset={dataset}",)) == target((f"model={default}",))
    monkeypatch.setattr(model_contract, "SETTINGS", {default: {"datasets": [dataset]}, model: {"datasets": [dataset]}})
    model_contract.test_forward_on_its_data_sets(default)  # (on the new data set only: the others are checked
    model_contract.test_forward_on_its_data_sets(model)    # by the model contract suite)
    model_contract.test_vmap_equals_loop(model)
    names = [k for k, _ in model_contract.build_model(model, dataset)[0].named_parameters()]
    assert names[-1].startswith("head."), "the last layer is called head"


def test_the_guide_commands_compose_and_validate(guide):
    checked = 0
    for where, args, error in commands(GUIDE):
        if PLACEHOLDER.search(args.split("#")[0]) or error is not None:
            continue
        jobs = pfl.cli._plain_overrides(args.split("#")[0].split())
        validate(compose_cfg(jobs[0], tiny=False))  # a sweep: its first combination
        checked += 1
    assert checked >= 4, checked


def test_a_run_of_the_three_together(guide, tmp_path):
    small = {"dataset.num_clients": 12, "dataset.train_clients": 8, "dataset.max_examples": DROP,
             "dataset.examples": 20, "rounds": 2}
    run = contract_run(guide["algorithm"], "vmap", tmp_path / "run",
                       [f"dataset={guide['dataset']}", f"model={guide['model']}", "model.hidden=[8]"], changes=small)
    assert run.cfg.dataset.name == guide["dataset"] and run.cfg.model._target_.endswith(".NormMLP")
    assert 0 <= run.summary["initial_accuracy"] <= 1
    check_bytes(run)
