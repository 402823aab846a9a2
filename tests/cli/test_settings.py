"""Each setting declared once: the class's `setting(...)` is the default, the type and the check;
YAML options extend its schema and set only what differs; errors name the real config path."""

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from tests.helpers import compose_cfg
from pfl.config import CONF_DIR, algorithm_name, option_target, register, schema_targets, stage_names, validate
from pfl.config.errors import ConfigError
from pfl.config.settings import Settings, checked, integer, number, optional, relation, rules, schema, setting

SCHEMA_GROUPS = ("algorithm", "client_opt", "dataset", "model", "logger")
OPTIONS = [(g, p.stem) for g in SCHEMA_GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))]


@dataclass
class Toy(Settings):
    steps: int = setting(5, integer(ge=1))
    frac: float = setting(0.5, number(gt=0, lt=1))
    size: int | None = setting(None, optional(integer(ge=1)))
    config_path = "toy"


def test_a_setting_checks_its_value_when_constructed():
    assert Toy().steps == 5 and set(rules(Toy)) == {"steps", "frac", "size"}
    with pytest.raises(ConfigError, match=r"^toy\.steps=0 is not allowed: expected an integer >= 1$"):
        Toy(steps=0)
    with pytest.raises(ConfigError, match=r"toy\.frac=1 is not allowed: expected a number in \(0, 1\)"):
        Toy(frac=1)
    with pytest.raises(ConfigError, match="expected null or an integer >= 1"):
        Toy(size=0)
    assert Toy(size=3).size == 3


def test_a_function_checks_its_annotated_parameters():
    @checked("thing")
    def load(n: Annotated[int, integer(ge=2)] = 3,
             k: Annotated[int, relation(lambda v, s: v < s["n"], "less than thing.n")] = 1):
        return n, k

    assert load() == (3, 1)
    with pytest.raises(ConfigError, match=r"thing\.n=1"):
        load(n=1)
    with pytest.raises(ConfigError, match=r"thing\.k=5 is not allowed: expected less than thing.n"):
        load(k=5)


@pytest.mark.parametrize("group,option", OPTIONS)
def test_every_option_extends_its_targets_schema_and_sets_only_what_differs(group, option):
    path = CONF_DIR / group / f"{option}.yaml"
    targets = schema_targets(path)
    assert len(targets) == 1, f"{path} should extend its target's schema: defaults: [/<_target_>@_here_]"
    raw = yaml.safe_load(path.read_text())
    if group == "logger":  # a logger option's node sits under its name (logger=[csv,wandb]: logger.csv, logger.wandb)
        assert schema_targets(path) and f"@{option}" in str(raw["defaults"]), f"{path}: - /<_target_>@{option}"
        raw = {"defaults": raw["defaults"], **(raw.get(option) or {})}
    assert "_target_" not in raw and ("name" not in raw or group in ("dataset", "logger")), "the schema carries the _target_"
    defaults = OmegaConf.to_container(OmegaConf.structured(schema(targets[0])))
    for key, value in raw.items():
        if key in ("defaults", "name") or isinstance(value, str) and value.startswith("${"):
            continue
        assert key in defaults, f"{group}/{option}: {key} is not a setting of {targets[0]}"
        assert value != defaults[key], f"{group}/{option}: {key}={value!r} repeats the class default"


def test_papers_values_are_the_class_defaults():
    from pfl.algorithms import FOMAML, PerFedAvg, Reptile

    assert Reptile().local_steps == 5 and FOMAML().local_steps == 5
    assert PerFedAvg().support_fraction == 0.8
    for option in ("reptile", "fomaml", "perfedavg"):
        cfg = compose_cfg([f"algorithm={option}"])
        assert cfg.algorithm.get("local_steps") == 5 and cfg.algorithm.get("support_fraction", 0.8) == 0.8


def test_errors_name_the_real_config_path():
    cfg = compose_cfg(["experiment=personalized_fedavg", "stages.1.algorithm.local_steps=0"])
    with pytest.raises(ConfigError) as exc:
        validate(cfg)
    assert str(exc.value) == "stages.1.algorithm.local_steps=0 is not allowed: expected an integer >= 1"
    cfg = compose_cfg(["personalization.client_opt={_target_:pfl.optim.ClientSGD,lr:-1}"])
    with pytest.raises(ConfigError, match=r"^personalization\.client_opt\.lr=-1 "):
        validate(cfg)
    cfg = compose_cfg(["callbacks=[{_target_:pytorch_lightning.callbacks.Timer,durationn:1}]"])
    with pytest.raises(ConfigError, match=r"^unknown setting 'callbacks\.0\.durationn'; did you mean 'callbacks\.0\.duration'\? \(the settings of"):
        validate(cfg)


def test_a_typo_or_a_wrong_type_fails_while_composing():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        compose_cfg(["algorithm=reptile", "algorithm.local_stepz=3"])
    with pytest.raises(ConfigCompositionException):
        compose_cfg(["algorithm=reptile", "algorithm.local_steps=abc"])


def test_names_come_from_the_group_choice():
    assert algorithm_name(compose_cfg(["algorithm=reptile"])) == "reptile"
    assert stage_names(compose_cfg(["experiment=personalized_fedavg"])) == ["fedavg", "reptile"]
    assert option_target("algorithm", "reptile") == "pfl.algorithms.Reptile"


def test_a_copied_yaml_is_a_new_option_with_no_other_edit(tmp_path):
    from pfl.run import build_stages

    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    shutil.copy(conf / "algorithm" / "reptile.yaml", conf / "algorithm" / "my_reptile.yaml")
    register(conf)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = compose("config", overrides=["algorithm=my_reptile", "algorithm.local_steps=2"],
                          return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    validate(cfg)
    stage = build_stages(cfg)[0]
    assert stage.name == "my_reptile" and stage.algorithm.local_steps == 2


@pytest.mark.slow  # composes every data set with every model
def test_each_dataset_names_its_default_model_and_model_overrides():
    expected = {"synthetic": "pfl.models.mlp.MLP", "emnist": "pfl.models.cnn.EmnistCNN",
                "femnist_leaf": "pfl.models.cnn.EmnistCNN", "shakespeare": "pfl.models.lstm.CharLSTM",
                "shakespeare_leaf": "pfl.models.lstm.CharLSTM", "cifar100": "pfl.models.resnet.ResNet18",
                "fed_cifar100": "pfl.models.resnet.ResNet18"}
    for dataset, target in expected.items():
        assert compose_cfg([f"dataset={dataset}"], tiny=False).model._target_ == target
        assert compose_cfg([f"dataset={dataset}", "model=small_cnn"], tiny=False).model._target_.endswith("SmallCNN")
        assert compose_cfg(["model=small_cnn", f"dataset={dataset}"], tiny=False).model._target_.endswith("SmallCNN")
    assert not (Path(CONF_DIR) / "model" / "emnist.yaml").exists()  # no alias files


def test_loggers_and_callbacks_by_target(tmp_path):
    from pfl.config.experiment import logger_factories
    from pfl.config.hooks import callbacks_for
    from pfl.config.identity import run_info
    from pfl.engine.loggers import make_loggers

    cfg = compose_cfg(["callbacks=[{_target_:pytorch_lightning.callbacks.Timer,duration:'00:00:01:00'}]"])
    validate(cfg)
    assert [type(c).__name__ for c in callbacks_for(cfg)] == ["Timer"]
    loggers = make_loggers(logger_factories(cfg), run_info(cfg), tmp_path, None)
    assert [type(lg).__name__ for lg in loggers] == ["MetricsCSV"]
    cfg = compose_cfg(["logger=wandb", "logger.wandb.mode=disabled"])
    loggers = make_loggers(logger_factories(cfg), run_info(cfg), tmp_path, None)
    assert [type(lg).__name__ for lg in loggers] == ["MetricsCSV", "PflWandbLogger"]
