"""The first paper's runs end to end at tiny size on the default (synthetic) data set:
every preset, Personalized FedAvg's two stages, fine-tuning from a checkpoint, the
centralized baseline, the run plots. The presets name EMNIST; `dataset=synthetic` on the
command line replaces it (and the model follows the data set)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from tests.helpers import REPO, TINY_JIANG, compose_cfg, tiny

os.environ.setdefault("WANDB_MODE", "disabled")

TINY = tiny(TINY_JIANG)


def compose(overrides, hydra_cfg=False):
    return compose_cfg(overrides, tiny=False, return_hydra_config=hydra_cfg)


def run(overrides, run_dir):
    from pfl.run import train

    cfg = compose([*TINY, *overrides])
    return train(cfg, run_dir), cfg


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _png_ok(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 2000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # a two-stage run with plots
def test_personalized_fedavg_two_stages_metrics_records_and_plots(tmp_path):
    summary, cfg = run(["experiment=personalized_fedavg", "stages.0.rounds=2", "stages.1.rounds=1",
                        "stages.0.algorithm.local_epochs=2", "stages.1.server_opt.lr=0.003", "plots=true"], tmp_path)
    assert cfg.stages[1].server_opt.lr == 0.003 and cfg.stages[1].server_opt._target_ == "torch.optim.Adam"
    assert summary["algorithm"] == "fedavg+reptile"
    assert summary["stages"] == [{"name": "fedavg", "rounds": 2}, {"name": "reptile", "rounds": 1}]
    assert summary["rounds"] == 3
    # evaluated at the end of each stage: the switch is visible in metrics.csv
    rows = _rows(tmp_path / "metrics.csv")
    assert [(int(r["round"]), int(r["stage"])) for r in rows] == [(1, 0), (2, 0), (3, 1)]  # a row per round
    assert [int(r["round"]) for r in rows if r["heldout/initial_acc"]] == [2, 3]  # evaluated at each stage's end
    # per-client records: one row per evaluated client, accuracy after k = 0..2
    held = _rows(tmp_path / "clients_heldout.csv")
    assert len(held) == 5 and {"client_id", "num_train", "num_test", "acc_0", "acc_1", "acc_2"} <= set(held[0])
    assert len(_rows(tmp_path / "clients_train.csv")) == 3
    acc = torch.tensor([[float(r["acc_0"]), float(r["acc_2"])] for r in held])
    assert summary["initial_accuracy"] == pytest.approx(float(acc[:, 0].mean()))
    assert summary["personalized_accuracy"]["2"] == pytest.approx(float(acc[:, 1].mean()))
    assert summary["fraction_worse"] == pytest.approx(float((acc[:, 1] < acc[:, 0]).double().mean()))
    assert len(summary["personalization_curve"]) == 3
    for name in ("accuracy_vs_round", "personalization_curve", "clients_scatter"):
        assert _png_ok(tmp_path / "plots" / f"{name}.png"), name


def test_table1_fedavg_then_table3_and_table2_finetune_from_its_checkpoint(tmp_path):
    from pfl.config import hooks
    from pfl.run import load_global_params

    base = tmp_path / "fedavg"
    summary, cfg = run(["experiment=jiang2019_table1", "algorithm.local_epochs=1"], base)
    assert cfg.server_opt.momentum == 0.9 and cfg.personalization.client_opt is None  # the training optimizer
    assert summary["algorithm"] == "fedavg"
    ks, tracked = cfg.personalization.epochs, cfg.personalization.track_epochs  # Table 1: Pers.5 tracked every round
    assert set(summary["rounds_to_target"]) == ({"initial"} | {str(k) for k in [*ks, *tracked]}
                                               | {f"personalized_{k}" for k in ks})
    assert summary["rounds_to_target_resolution"]["5"]["every"] == 1 == summary["rounds_to_target_resolution"]["initial"]["every"]
    saved = load_global_params(base)
    assert torch.equal(saved["head.weight"], load_global_params(base / "checkpoints" / "last.ckpt")["head.weight"])

    seen = {}

    class AtStart(pl.Callback):
        def on_train_start(self, trainer, module):
            seen.update({k: v.detach().clone() for k, v in module.params().items()})

    hooks.register("test_init_from", lambda cfg: [AtStart()])
    try:
        summary, cfg = run(["experiment=jiang2019_table3", f"init_from={base}", "rounds=1",
                            "algorithm.local_steps=2"], tmp_path / "reptile")
    finally:
        hooks._FACTORIES.pop("test_init_from")
    assert summary["algorithm"] == "reptile" and cfg.server_opt._target_ == "torch.optim.Adam"
    assert set(seen) == set(saved) and all(torch.equal(seen[k], saved[k]) for k in saved)
    assert not torch.equal(load_global_params(tmp_path / "reptile")["head.weight"], saved["head.weight"])

    summary, cfg = run(["experiment=jiang2019_table2", f"init_from={base}", "rounds=1", "algorithm.local_steps=1",
                        "personalization.train_clients=4"], tmp_path / "seen")
    assert summary["train_clients"]["initial_accuracy"] is not None  # seen
    assert summary["initial_accuracy"] is not None  # unseen


def test_figure2_right_centralized_preset(tmp_path):
    summary, cfg = run(["experiment=jiang2019_figure2_right", "algorithm.epochs=2", "algorithm.batch_size=16",
                        "eval_every=1"], tmp_path)
    assert summary["algorithm"] == "centralized" and summary["rounds"] == 2  # one round per epoch
    assert [int(r["round"]) for r in _rows(tmp_path / "metrics.csv")] == [1, 2]
    assert summary["personalized_accuracy"] and summary["train_clients"]["initial_accuracy"] is not None


def test_centralized_one_epoch_of_one_batch_is_one_adam_step_on_the_pool(tmp_path):
    from pfl.run import build, load_global_params
    from pfl.task import Task

    summary, cfg = run(["algorithm=centralized", "algorithm.epochs=1", "algorithm.batch_size=100000",
                        "algorithm.lr=0.01"], tmp_path)
    pl.seed_everything(cfg.seed, verbose=False)  # train() builds data then model after this
    data = build(cfg.dataset)
    model = build(cfg.model, num_classes=data.num_classes, **data.info.get("model_kwargs", {}))
    task = Task(model, data.input_transform, data.ignore_index)
    params = {k: torch.nn.Parameter(v) for k, v in task.init_params().items()}
    pool = data.train.train
    opt = torch.optim.Adam(params.values(), lr=0.01)
    task.loss(params, pool.x, pool.y, torch.ones(len(pool.y), dtype=torch.bool)).backward()
    opt.step()
    trained = load_global_params(tmp_path)
    for k in params:
        torch.testing.assert_close(trained[k], params[k].detach(), rtol=1e-5, atol=1e-6)


def test_presets_declare_the_papers_grids():
    grids = {
        "jiang2019_table1": {"algorithm.local_epochs": "2,5,10,20", "clients_per_round": "5,20"},
        "jiang2019_table3": {"algorithm.local_steps": "1,5,10", "server_opt": "finetune_adam,finetune_sgd,finetune_sgdm"},
        "jiang2019_table2": {"algorithm.local_steps": "1,10", "server_opt": "finetune_adam"},
    }
    for name, grid in grids.items():
        cfg = compose([f"experiment={name}", "dataset=synthetic"], hydra_cfg=True)
        assert dict(cfg.hydra.sweeper.params) == grid, name
    cfg = compose(["experiment=jiang2019_figure2_right", "dataset=synthetic"], hydra_cfg=True)
    params = cfg.hydra.sweeper.params
    assert params["algorithm.epochs"] == "10,50" and params["personalization.client_opt"].count("_target_") == 4
    for name in ("jiang2019_table1", "jiang2019_table3", "jiang2019_figure2_right"):  # EMNIST-62 unless told
        assert "override /dataset: emnist" in (REPO / "conf" / "experiment" / f"{name}.yaml").read_text()
    assert compose(["experiment=jiang2019_table1", "dataset=synthetic"]).rounds == 500


@pytest.mark.slow  # real processes (interpreter start-up dominates); runs in the full suite
def test_table1_multirun_from_the_command_line(tmp_path):
    """`python -m pfl -m experiment=...`: the preset's grid, narrowed to one job by CLI values."""
    env = dict(os.environ, PYTHONPATH=str(REPO), WANDB_MODE="disabled")
    args = [sys.executable, "-m", "pfl", "-m", "experiment=jiang2019_table1", *TINY, "rounds=1",
            "algorithm.local_epochs=1", f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Launching 1 jobs" in proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "0" / "summary.json").read_text())
    assert summary["algorithm"] == "fedavg" and summary["clients_per_round"] == 3
