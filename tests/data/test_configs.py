"""Every new dataset/model option composes, names a real loader, and sets only keys it accepts."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import get_method
from omegaconf import OmegaConf

from pfl.cli import CONF_DIR
from pfl.config import option_target, register

DATASETS = sorted(p.stem for p in (Path(CONF_DIR) / "dataset").glob("*.yaml"))


def default_model(dataset: str) -> str | None:
    """The model option a data set's YAML names (`- /model@_global_.model: NAME`), read from the file."""
    for entry in yaml.safe_load((Path(CONF_DIR) / "dataset" / f"{dataset}.yaml").read_text()).get("defaults", []):
        if isinstance(entry, dict) and "/model@_global_.model" in entry:
            return entry["/model@_global_.model"]
    return None


def _accepts(target: str, node) -> None:
    params = inspect.signature(get_method(target)).parameters
    keys = [k for k in node if k not in ("_target_", "_partial_", "name")]
    unknown = [k for k in keys if k not in params]
    assert not unknown, f"{target} does not accept {unknown}"


@pytest.mark.parametrize("dataset", DATASETS)
def test_dataset_option_composes_with_its_default_model(dataset):
    register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"dataset={dataset}", "zeta=0.3", "seed=7"])
    model = default_model(dataset)
    assert model is not None, f"conf/dataset/{dataset}.yaml names no default model (- /model@_global_.model: NAME)"
    assert cfg.dataset.name == dataset and cfg.model._target_ == option_target("model", model)
    ds = OmegaConf.to_container(cfg.dataset, resolve=True)
    assert ds["zeta"] == 0.3 and ds["seed"] == 7
    assert ds.get("root") is None and ds.get("cache_dir") is None  # real data: no path unless given
    _accepts(cfg.dataset._target_, ds)
    _accepts(cfg.model._target_, cfg.model)


@pytest.mark.parametrize("model", ["char_lstm", "resnet18_gn", "small_cnn"])
def test_model_options_compose(model):
    register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["dataset=cifar100", f"model={model}"])
    _accepts(cfg.model._target_, cfg.model)
