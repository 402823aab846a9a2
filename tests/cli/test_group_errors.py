"""Errors found from the composed config's structure: a group nothing selects, a model argument the data set gives."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import pfl.cli as cli
from pfl.config.resources import CONF_DIR

NO_MODEL = """defaults:
  - /pfl.data.synthetic_mixture.load_synthetic_mixture@_here_
  - _self_

name: nomodel
zeta: ${zeta}
seed: ${seed}
"""


@pytest.fixture
def conf_without_default_model(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    (conf / "dataset" / "nomodel.yaml").write_text(NO_MODEL)
    monkeypatch.setattr(cli, "CONF_DIR", str(conf))
    return conf


def test_a_model_for_a_data_set_without_a_default_model(conf_without_default_model):
    assert cli.precheck(["dataset=nomodel", "model=mlp"]) == (
        "error: model=mlp: nothing selects a model to replace (dataset=nomodel names no default model); "
        "add it with +model=mlp")
    assert cli.precheck(["dataset=nomodel"]).startswith(
        "error: model is not set (dataset=nomodel names no default model); choose one with +model=NAME, NAME one of: ")
    assert cli.precheck(["dataset=nomodel", "+model=mlp"]) is None
    assert cli.precheck(["model=nope"]).startswith("error: model=nope is not an option; choose one of: ")


def test_a_model_argument_the_data_set_supplies():
    assert Path(cli.CONF_DIR) == CONF_DIR
    assert cli.precheck(["model=mlp", "+model.in_features=784"]) == (
        "error: model.in_features=784 is not allowed: expected nothing: dataset synthetic supplies in_features "
        "to the model (remove +model.in_features)")
