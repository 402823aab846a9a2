"""hydra-optuna-sweeper's keys work with pfl's sweeper: a YAML written for it runs unchanged, and its keys on
the command line win over a sweep definition's (`hydra.sweeper.n_trials=3`)."""

import json
from pathlib import Path

import optuna
import pytest
import yaml

from pfl.sweep.driver import merged_settings
from tests.helpers import REPO, compose_cfg
from tests.sweep.test_e2e import TINY, pfl


def _sweeper_keys(cfg) -> dict:
    return {k: v for k, v in cfg.hydra.sweeper.items() if k not in ("_target_", "params")}


def test_hydra_sweeper_keys_win_over_the_sweep_definition():
    cfg = compose_cfg(["+sweep=fedavg_e_lr", "hydra.sweeper.n_trials=3", "hydra.sweeper.direction=minimize",
                       "hydra.sweeper.study_name=mine", "hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=4",
                       "hydra.sweeper.n_jobs=2"], return_hydra_config=True)
    s = merged_settings(cfg, _sweeper_keys(cfg))
    assert (s.n_trials, s.directions, s.name, s.n_jobs) == (3, ["minimize"], "mine", 2)
    assert s.sampler == {"_target_": "optuna.samplers.RandomSampler", "seed": 4}
    assert s.pruner["_target_"].endswith("MedianPruner")  # the definition's extras stay
    default = compose_cfg(["+sweep=fedavg_e_lr"], return_hydra_config=True)
    s = merged_settings(default, _sweeper_keys(default))
    assert (s.n_trials, s.name) == (30, "fedavg_e_lr") and s.sampler["n_startup_trials"] == 8


@pytest.mark.parametrize("value", ["maximize", "[maximize]"])
def test_directions_may_be_one_string(value):
    cfg = compose_cfg(["+sweep=fedavg_e_lr", f"sweep.directions={value}"], return_hydra_config=True)
    assert merged_settings(cfg, _sweeper_keys(cfg)).directions == ["maximize"]


@pytest.mark.slow  # real processes (interpreter start-up dominates); runs in the full suite
def test_a_yaml_written_for_hydra_optuna_sweeper_runs_unchanged(tmp_path):
    d = tmp_path / "sweep"
    rc, out = pfl("-m", "--config-dir", str(REPO / "tests" / "sweep" / "configs"), "experiment=hos_fedavg_lr",
                  *TINY, f"hydra.sweep.dir={d}")
    assert rc == 0, out[-3000:]
    study = optuna.load_study(study_name="fedavg_lr", storage=f"sqlite:///{d / 'optuna.db'}")
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert all(0.005 <= t.params["client_opt.lr"] <= 0.1 and t.params["algorithm.local_epochs"] in (1, 2) for t in trials)
    assert study.metric_names == ["heldout/pers_acc_2"]  # the default objective, named for optuna-dashboard
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    # hydra-optuna-sweeper's results file, and the best trial in sweep.json
    results = yaml.safe_load((d / "optimization_results.yaml").read_text())
    best = study.best_trial
    assert results == {"name": "optuna", "best_params": best.params, "best_value": best.value}
    (entry,) = json.loads((d / "sweep.json").read_text())["best"]["fedavg_lr"]
    assert (entry["number"], entry["params"], entry["values"]) == (best.number, best.params, [best.value])
    assert Path(entry["run_dir"]).name == f"trial_{best.number}" and (Path(entry["run_dir"]) / "summary.json").is_file()


@pytest.mark.slow  # real processes (interpreter start-up dominates); runs in the full suite
def test_a_lightning_hydra_template_search_runs_unchanged(tmp_path):
    """Its layout: top-level optimized_metric, hydra.mode MULTIRUN (no -m), the upstream sweeper's _target_,
    a sampler with _target_, tag(log, interval(...)) and range(...)."""
    d = tmp_path / "sweep"
    rc, out = pfl("--config-dir", str(REPO / "tests" / "sweep" / "configs"), "+hparams_search=lht_fedavg",
                  *TINY, f"hydra.sweep.dir={d}", "hydra.sweeper.n_trials=1")  # one trial: the file's keys are the point
    assert rc == 0, out[-3000:]
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{d / 'optuna.db'}")
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"]
    assert study.metric_names == ["heldout/pers_acc_2"]  # optimized_metric
    assert all(t.params["algorithm.local_epochs"] in (1, 2) for t in study.get_trials())
    results = yaml.safe_load((d / "optimization_results.yaml").read_text())
    assert results["best_value"] == study.best_value and results["best_params"] == study.best_params


def test_a_multi_objective_hydra_optuna_sweeper_yaml_composes():
    where = (REPO / "tests" / "sweep" / "configs").as_uri()
    cfg = compose_cfg([f"hydra.searchpath=[{where}]", "experiment=hos_two_objectives"], return_hydra_config=True)
    s = merged_settings(cfg, _sweeper_keys(cfg))
    assert (s.name, s.directions, s.n_trials) == ("two-objectives", ["maximize", "maximize"], 20)
    assert s.objectives == ["heldout/pers_acc_2", "heldout/pers_acc_1"]
    assert s.sampler == {"_target_": "optuna.samplers.NSGAIISampler", "seed": 123}
