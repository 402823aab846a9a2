"""The AFML paper's grid presets: the small one runs (tiny), the real ones compose."""

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from pfl.cli import CONF_DIR
from pfl.config import algorithm_name, register, validate
from pfl.run import build, train
from tests.helpers import REPO as ROOT


def _compose(overrides, hydra=False):
    register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=hydra)


def _grid(preset):
    params = _compose([f"experiment={preset}"], hydra=True).hydra.sweeper.params
    return {k: str(v).split(",") for k, v in params.items()}


@pytest.mark.slow  # composes every cell of the grid
def test_small_grid_is_the_papers_grid():
    grid = _grid("afml2023_grid_small")
    assert grid == {"zeta": ["0.1", "0.3", "0.5", "0.7", "0.9"], "algorithm": ["fedavg_ft", "perfedavg", "apfl", "afml"]}
    for zeta, alg in itertools.product(*grid.values()):
        cfg = _compose(["experiment=afml2023_grid_small", f"zeta={zeta}", f"algorithm={alg}"])
        validate(cfg)
        built = build(cfg.algorithm)
        assert algorithm_name(cfg) == alg and cfg.rounds == 10  # the preset's values win over config.yaml's
        if alg in ("perfedavg", "afml"):
            assert built.support_fraction == 0.8
        if alg == "fedavg_ft":
            assert built.finetune_steps == 10  # Reptile(K=10) fine-tuning, the paper's "FedAvg-FT, K=10"


@pytest.mark.slow  # one run per algorithm of the grid
def test_small_grid_runs_each_algorithm(tmp_path, monkeypatch):
    monkeypatch.setenv("PFL_CACHE", str(tmp_path / "cache"))
    for alg in _grid("afml2023_grid_small")["algorithm"]:
        cfg = _compose(["experiment=afml2023_grid_small", "zeta=0.3", f"algorithm={alg}", "rounds=2", "eval_every=2",
                        "personalization.local_epochs=2", "engine.count_flops=true"])
        s = train(cfg, tmp_path / alg)
        assert set(s["personalized_accuracy"]) >= {"1", "5"}
        assert s["local_baseline"] is not None and s["flops_per_round"][alg] > 0


@pytest.mark.slow  # real processes (interpreter start-up dominates); runs in the full suite
def test_small_grid_cli_multirun(tmp_path):
    """The preset is a Hydra multirun; one cell of it through `python -m pfl`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PFL_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pfl", "experiment=afml2023_grid_small", "hydra.sweeper.params.zeta=0.5",
           "hydra.sweeper.params.algorithm=afml", "rounds=1", "eval_every=1", "personalization.local_epochs=1",
           f"hydra.sweep.dir={tmp_path / 'multi'}"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((tmp_path / "multi/0/summary.json").read_text())
    assert summary["algorithm"] == "afml" and summary["zeta"] == 0.5
    assert not (tmp_path / "multi/1").exists()


@pytest.mark.parametrize("preset,dataset", [("afml2023_figure3_cifar100", "cifar100"),
                                            ("afml2023_figure3_shakespeare", "shakespeare")])
@pytest.mark.slow  # composes every cell of each grid
def test_paper_grids_compose(preset, dataset):
    grid = _grid(preset)
    assert grid["zeta"] == [f"{z / 10:.1f}" for z in range(11)]  # Figure 3's axis: zeta over [0, 1]
    assert grid["algorithm"] == ["fedavg_ft", "perfedavg", "apfl", "afml", "fedmeta"]
    for zeta, alg in itertools.product(["0.0", "1.0"], grid["algorithm"]):
        cfg = _compose([f"experiment={preset}", f"zeta={zeta}", f"algorithm={alg}"])
        validate(cfg)
        assert cfg.dataset.name == dataset and cfg.personalization.local_baseline
        assert algorithm_name(cfg) == alg
