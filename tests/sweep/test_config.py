"""Sweep configuration: every shipped sweep composes, grids are pre-checked per group, SLURM config."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from pfl.cli import CONF_DIR, precheck
from pfl.config import register
from pfl.sweep.definitions import SWEEPS_DIR, names
from pfl.config.sweep import SweepSettings
from pfl.sweep.space import split


def _compose(overrides: list[str], hydra: bool = False):
    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose("config", overrides=overrides, return_hydra_config=hydra)
    finally:
        GlobalHydra.instance().clear()


def _missing_option(name: str) -> str | None:
    """A sweep that selects an option another branch ships (afml, personalized_fedavg) is skipped without it."""
    text = (SWEEPS_DIR / f"{name}.yaml").read_text()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("- override /") and not line.startswith("- override /hydra"):
            group, _, option = line[len("- override /"):].partition(":")
            if not (Path(CONF_DIR) / group / f"{option.strip()}.yaml").is_file():
                return f"{group}/{option.strip()}"
    return None


@pytest.mark.parametrize("name", names())
def test_every_shipped_sweep_composes_with_valid_settings(name):
    missing = _missing_option(name)
    if missing:
        pytest.skip(f"conf/{missing}.yaml is not in this checkout")
    cfg = _compose([f"+sweep={name}"], hydra=True)
    settings = SweepSettings.from_cfg(cfg.sweep)
    assert settings.name == name
    assert cfg.hydra.sweeper._target_.endswith("PflOptunaSweeper")
    assert cfg.hydra.sweep.dir == f"multirun/sweeps/{name}"  # fixed, so rerunning resumes
    space, _ = split(settings.params)
    assert space, name
    for key in space:  # every searched key exists in the composed config
        node, _, leaf = key.lstrip("+").rpartition(".")
        parent = cfg.select(node) if hasattr(cfg, "select") else None
        from omegaconf import OmegaConf

        parent = OmegaConf.select(cfg, node) if node else cfg
        assert parent is not None and leaf in parent, f"{name}: {key} is not a setting"
    assert precheck(["-m", f"+sweep={name}"]) is None


def test_required_sweeps_are_shipped():
    assert {"fedavg_e_lr", "reptile_k_server_lr", "afml_alpha_beta", "pfedavg_tradeoff"} <= set(names())


@pytest.mark.slow  # composes every swept option
def test_grid_precheck_composes_each_swept_group():
    assert precheck(["-m", "algorithm=fedavg", "algorithm.local_epochs=2,5,10", "seed=0,1,2"]) is None
    assert precheck(["-m", "algorithm=reptile", "algorithm.local_steps=2,5,10", "seed=0,1,2"]) is None
    err = precheck(["-m", "algorithm=fedavg,reptile", "algorithm.local_epochs=2,5,10", "seed=0,1,2"])
    assert err.startswith("error: unknown setting 'algorithm.local_epochs'") and "algorithm=reptile" in err
    # Optuna search spaces and quoted values are left to the sweeper
    assert precheck(["-m", "+sweep=fedavg_e_lr", "client_opt.lr=tag(log,interval(0.001,0.1))",
                     "++sweep.storage='postgresql://u:p@host/db?a=1,b=2'"]) is None


def test_joblib_launcher_config():
    cfg = _compose(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], hydra=True)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2


def test_slurm_recipe_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher (extra `slurm`)")
    cfg = _compose(["+sweep=fedavg_e_lr", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
                    "hydra.launcher.timeout_min=240", "hydra.launcher.gpus_per_node=1", "hydra.launcher.cpus_per_task=8",
                    "hydra.launcher.array_parallelism=8", "sweep.n_jobs=8",
                    "++sweep.storage=postgresql://pfl:secret@db.cluster/pfl"], hydra=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.timeout_min, launcher.gpus_per_node) == ("gpu", 240, 1)
    assert cfg.sweep.n_jobs == 8 and cfg.sweep.storage.startswith("postgresql://")
    assert cfg.hydra.sweeper._target_.endswith("PflOptunaSweeper")


def test_wandb_group_tags_and_names():
    from pfl.config.identity import run_info
    from pfl.engine.wandb_logger import run_identity

    cfg = _compose(["+sweep=fedavg_e_lr", "logger=wandb", "zeta=0.5", "++sweep.study=fedavg_e_lr", "++sweep.trial=3"])
    group, tags, name = run_identity(run_info(cfg), Path("multirun/sweeps/fedavg_e_lr/trial_3"))
    # the name: the trial and the values of its searched keys (the key's last part)
    assert group == "fedavg_e_lr" and name == f"trial 3: local_epochs={cfg.algorithm.local_epochs} lr={cfg.client_opt.lr}"
    assert run_info(cfg).job_type == "sweep-trial"
    assert run_info(_compose(["algorithm=centralized"])).job_type == "centralized"
    assert run_info(_compose([])).job_type == "train"
    assert {"algorithm:fedavg", "dataset:synthetic", "zeta:0.5", "sweep:fedavg_e_lr"} <= set(tags)
    group, tags, name = run_identity(run_info(_compose(["logger=wandb"])), Path("outputs/a/b"), group="mine")
    assert (group, name) == ("mine", "b") and "sweep:fedavg_e_lr" not in tags
