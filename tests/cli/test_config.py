"""Every config option composes and instantiates; bad input gives one clear line."""

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pfl.cli import CONF_DIR
from pfl.run import build, build_stages
from tests.helpers import REPO, TINY, compose_cfg

GROUPS = {d.name: sorted(p.stem for p in d.glob("*.yaml")) for d in Path(CONF_DIR).iterdir() if d.is_dir()}


@pytest.mark.parametrize("option", GROUPS["algorithm"])
def test_every_algorithm_instantiates(option):
    cfg = compose_cfg([f"algorithm={option}"])
    stages = build_stages(cfg)
    assert stages[0].name == option  # the name is the group choice


@pytest.mark.parametrize("group", ["server_opt", "client_opt"])
def test_every_optimizer_instantiates(group):
    import torch

    for option in GROUPS[group]:
        cfg = compose_cfg([f"{group}={option}"])
        obj = build(cfg[group])
        if group == "server_opt":
            opt = obj([torch.nn.Parameter(torch.zeros(2))])
            assert isinstance(opt, torch.optim.Optimizer)
        else:
            assert obj.batch_size >= 1 and obj.lr > 0


def test_every_model_option_composes():
    for option in GROUPS["model"]:
        cfg = compose_cfg([f"model={option}"])
        assert "_target_" in cfg.model


@pytest.mark.slow  # composes every experiment preset
def test_every_experiment_and_logger_composes():
    for option in GROUPS.get("experiment", []):  # presets may switch data sets: compose without tiny sizes
        assert compose_cfg([f"experiment={option}"], tiny=False) is not None
    for option in GROUPS["logger"]:
        assert "_target_" in compose_cfg([f"logger={option}"]).logger[option]


def test_dataset_default_model_follows_dataset():
    cfg = compose_cfg([])
    assert cfg.model._target_ == "pfl.models.mlp.MLP"
    cfg = compose_cfg(["model=logreg"])
    assert list(cfg.model.hidden) == []


BAD = [
    (["algorithm=nope"], ["algorithm=nope", "fedavg", "reptile"]),
    (["zeta=1.5"], ["zeta=1.5", "[0, 1]"]),
    (["client_opt.lr=-1"], ["client_opt.lr=-1", "> 0"]),
    (["clients_per_round=999"], ["clients_per_round=999", "16"]),
    (["rounds=abc"], ["rounds=abc", "integer"]),
    (["nosuchkey=1"], ["nosuchkey"]),
    (["engine.backend=gpu"], ["engine.backend", "vmap"]),
    (["algorithm.local_epochs=0"], ["algorithm.local_epochs=0", ">= 1"]),
]


@pytest.mark.parametrize("args,words", BAD)
def test_bad_input_is_one_line_without_traceback(args, words, tmp_path, capsys, monkeypatch):
    """`pfl.cli.main` as the command runs it (in this process: each case costs no start-up)."""
    from pfl.cli import main

    monkeypatch.setattr(sys, "argv", ["pfl", *TINY, *args, f"hydra.run.dir={tmp_path}/run"])
    with pytest.raises(SystemExit) as stop:
        main()
    out = capsys.readouterr()
    assert stop.value.code == 2, out.err
    lines = [ln for ln in out.err.splitlines() if ln.strip()]
    assert len(lines) == 1, out.err
    assert "Traceback" not in out.err + out.out
    for w in words:
        assert w in lines[0], lines[0]
    assert not (tmp_path / "run" / "summary.json").exists()


def test_bad_input_in_a_real_process_is_one_line_and_exit_2(tmp_path):
    """The same through `python -m pfl` in a fresh process, with nothing but PATH in its environment."""
    args, words = BAD[1]
    proc = subprocess.run([sys.executable, "-m", "pfl", *TINY, *args, f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path,
                          capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "WANDB_MODE": "disabled"}, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and all(w in lines[0] for w in words), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "run" / "summary.json").exists()


def test_config_snapshot_resolves():
    cfg = compose_cfg(["zeta=0.4"])
    assert OmegaConf.to_container(cfg, resolve=True)["dataset"]["zeta"] == 0.4
