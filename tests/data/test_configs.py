"""Every new dataset/model option composes, names a real loader, and sets only keys it accepts."""

from __future__ import annotations

import inspect

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_method
from omegaconf import OmegaConf

from pfl.cli import CONF_DIR
from pfl.config import register

DEFAULT_MODEL = {
    "emnist": "pfl.models.cnn.EmnistCNN",
    "femnist_leaf": "pfl.models.cnn.EmnistCNN",
    "shakespeare": "pfl.models.lstm.CharLSTM",
    "shakespeare_leaf": "pfl.models.lstm.CharLSTM",
    "cifar100": "pfl.models.resnet.ResNet18",
    "fed_cifar100": "pfl.models.resnet.ResNet18",
}


def _accepts(target: str, node) -> None:
    params = inspect.signature(get_method(target)).parameters
    keys = [k for k in node if k not in ("_target_", "_partial_", "name")]
    unknown = [k for k in keys if k not in params]
    assert not unknown, f"{target} does not accept {unknown}"


@pytest.mark.parametrize("dataset", sorted(DEFAULT_MODEL))
def test_dataset_option_composes_with_its_default_model(dataset):
    register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"dataset={dataset}", "zeta=0.3", "seed=7"])
    assert cfg.dataset.name == dataset and cfg.model._target_ == DEFAULT_MODEL[dataset]
    ds = OmegaConf.to_container(cfg.dataset, resolve=True)
    assert ds["zeta"] == 0.3 and ds["seed"] == 7 and ds["root"] is None and ds["cache_dir"] is None
    _accepts(cfg.dataset._target_, ds)
    _accepts(cfg.model._target_, cfg.model)


@pytest.mark.parametrize("model", ["char_lstm", "resnet18_gn", "small_cnn"])
def test_model_options_compose(model):
    register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["dataset=cifar100", f"model={model}"])
    _accepts(cfg.model._target_, cfg.model)
