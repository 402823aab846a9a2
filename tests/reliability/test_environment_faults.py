"""Environment faults and misleading causes end in one line (pfl.engine.last_resort, pfl.cli, pfl.run):
each case runs the real entry point `pfl.cli.main` in this process with real files, a real signal, a
real closed port."""

from __future__ import annotations

import errno
import json
import os
import signal
import time

import pytest
import pytorch_lightning as pl
import torch

from pfl.config import hooks
from tests.cli.test_bad_input import DATA_FREE, _leaf, cli, one_error_line
from tests.helpers import TINY


def test_an_unforeseen_exception_is_one_line_and_a_logged_traceback(tmp_path, capsys, monkeypatch):
    import pfl.run

    def boom(cfg, run_dir=None):
        raise RuntimeError("something nobody foresaw\nsecond line")

    monkeypatch.setattr(pfl.run, "train", boom)
    code, out, err = cli(TINY + [f"hydra.run.dir={tmp_path}/run"], capsys, monkeypatch)
    line = one_error_line(code, out, err, 1, ["unexpected RuntimeError: something nobody foresaw", "please report"])
    log = line.split("the traceback is in ")[1].split(";")[0]
    assert log == str(tmp_path / "run" / "pfl.log")
    assert "Traceback" in open(log).read() and "boom" in open(log).read()


def test_hydra_failing_to_save_its_config_is_one_line(tmp_path, capsys, monkeypatch):
    """A disk that fills up as the run starts: Hydra's own .hydra/ write fails (here: ENOSPC, raised where
    Hydra saves it), and no Hydra traceback reaches the terminal."""
    import hydra.core.utils

    def full(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hydra.core.utils, "_save_config", full)
    code, out, err = cli(TINY + [f"hydra.run.dir={tmp_path}/run"], capsys, monkeypatch)
    one_error_line(code, out, err, 1, ["No space left on device"])


def test_full_disk_at_start(tmp_path, capsys, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9, 4096))
    code, out, err = cli(TINY + [f"hydra.run.dir={tmp_path}/run"], capsys, monkeypatch)
    one_error_line(code, out, err, 2, ["cannot be written", "no space left on the device, 4096 bytes free"])
    assert not (tmp_path / "run").exists()


def test_run_dir_inside_a_symlink_loop(tmp_path, capsys, monkeypatch):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    code, out, err = cli(TINY + [f"hydra.run.dir={tmp_path}/loop/run"], capsys, monkeypatch)
    one_error_line(code, out, err, 2, ["cannot be written", "symlink loop"])


@pytest.mark.parametrize("seed", ["-1", str(2**32), str(10**30)])
def test_seed_out_of_range(seed, tmp_path, capsys, monkeypatch):
    code, out, err = cli(TINY + [f"seed={seed}", f"hydra.run.dir={tmp_path}/run"], capsys, monkeypatch)
    one_error_line(code, out, err, 2, [f"seed={seed}", "an integer in [0, 4294967295]"])


class _Hangup(pl.Callback):
    def on_train_batch_start(self, trainer, module, *args):
        if int(module.round) == 0:
            os.kill(os.getpid(), signal.SIGHUP)  # a closed terminal / dropped ssh connection


def test_sighup_stops_like_sigterm(tmp_path, capsys, monkeypatch):
    previous = signal.getsignal(signal.SIGHUP)
    hooks.register("hangup", lambda cfg: [_Hangup()])
    try:
        code, out, err = cli(TINY + ["checkpoint_every=10", f"hydra.run.dir={tmp_path}/run"], capsys, monkeypatch)
    finally:
        hooks._FACTORIES.pop("hangup")
    assert code == 129, err[-2000:]
    assert "stopped at round 1 (stopped by SIGHUP); resume with:" in err and "Traceback" not in err
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert int(ckpt["state_dict"]["round"]) == 1
    assert signal.getsignal(signal.SIGHUP) == previous  # the run's handler is gone with the run


def test_wandb_online_without_network_falls_back_to_offline(monkeypatch, caplog):
    import socket

    from pfl.engine.loggers import wandb_mode

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # a closed local port: connection refused, as with no network
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("WANDB_MODE", "online")
    t = time.perf_counter()
    assert wandb_mode("auto") == "offline"
    assert time.perf_counter() - t < 30
    assert os.environ["WANDB_MODE"] == "offline"
    warnings = [r for r in caplog.records if "W&B server unreachable" in r.getMessage()]
    assert len(warnings) == 1 and f"127.0.0.1:{port}" in warnings[0].getMessage()


def test_unwritable_cache_is_optional(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("PFL_CACHE", str(tmp_path / "file" / "cache"))  # under a file: no one can create it
    _leaf(tmp_path / "leaf")
    code, out, err = cli(DATA_FREE + ["dataset=femnist_leaf", f"dataset.root={tmp_path}/leaf",
                                      "dataset.train_clients=4",
                                      "model=mlp", "rounds=1", "eval_every=1", "clients_per_round=2",
                                      "personalization.train_clients=0", f"hydra.run.dir={tmp_path}/run"],
                         capsys, monkeypatch)
    assert code == 0, err[-3000:]
    assert "decoded data not cached in" in out + err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "completed"


def test_nan_in_init_from_names_init_from(tmp_path, capsys, monkeypatch):
    first = tmp_path / "first"
    code, out, err = cli(TINY + ["rounds=1", "eval_every=1", f"hydra.run.dir={first}"], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    ckpt = torch.load(first / "checkpoints" / "last.ckpt", weights_only=True)
    name = next(k for k in ckpt["state_dict"] if k.startswith("global_params."))
    ckpt["state_dict"][name].view(-1)[0] = float("nan")
    torch.save(ckpt, tmp_path / "nan.ckpt")
    code, out, err = cli(TINY + [f"init_from={tmp_path}/nan.ckpt", f"hydra.run.dir={tmp_path}/run"],
                         capsys, monkeypatch)
    line = one_error_line(code, out, err, 2, ["init_from", "finite weights", "NaN"])
    assert "client_opt.lr" not in line


@pytest.mark.parametrize("objective,words", [
    ("heldout/pers_acc_7", ["7 personalization epochs are not reported"]),
    ("train_clients/local_acc", ["local-only baseline is off"]),
    ("heldotu/pers_acc_5", ["no metric family 'heldotu'"]),
])
def test_sweep_objective_that_no_trial_can_produce(objective, words, tmp_path, capsys, monkeypatch):
    code, out, err = cli(["-m", "+sweep=fedavg_e_lr", f"sweep.objectives=[{objective}]",
                          f"hydra.sweep.dir={tmp_path}/sweep"], capsys, monkeypatch)
    one_error_line(code, out, err, 2, ["sweep.objectives", objective, *words])
    assert not (tmp_path / "sweep").exists()  # refused before the first trial
