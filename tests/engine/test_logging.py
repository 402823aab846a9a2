"""Logging like a Lightning app: a row per round at step = round to every logger, one name per quantity,
trainer.* passed to pl.Trainer (unknown keys refused in one line), a progress bar that knows its total."""

import csv
import glob
import json
import struct

import pytest
import pytorch_lightning as pl

from pfl.cli import precheck
from pfl.run import train
from tests.helpers import compose_cfg

SMALL = ["dataset.num_clients=12", "dataset.train_clients=8", "clients_per_round=2", "personalization.train_clients=0",
         "checkpoint_every=0"]


def _events(path) -> list[tuple[int, str]]:
    """(step, tag) of every scalar in a TensorBoard event file (its record framing, read by hand)."""
    try:
        from tensorboardX.proto import event_pb2
    except ImportError:
        from tensorboard.compat.proto import event_pb2
    data, i, out = open(path, "rb").read(), 0, []
    while i < len(data):
        n = struct.unpack("Q", data[i:i + 8])[0]
        event = event_pb2.Event()
        event.ParseFromString(data[i + 12:i + 12 + n])
        out += [(event.step, v.tag) for v in event.summary.value]
        i += 12 + n + 4
    return out


def _values(path) -> list:
    """Every summary value (scalars, images, text, plugin data) of a TensorBoard event file."""
    try:
        from tensorboardX.proto import event_pb2
    except ImportError:
        from tensorboard.compat.proto import event_pb2
    data, i, out = open(path, "rb").read(), 0, []
    while i < len(data):
        n = struct.unpack("Q", data[i:i + 8])[0]
        event = event_pb2.Event()
        event.ParseFromString(data[i + 12:i + 12 + n])
        out += list(event.summary.value)
        i += 12 + n + 4
    return out


@pytest.mark.slow  # real processes (interpreter start-up dominates); runs in the full suite
def test_a_20_round_run_logs_every_round_to_every_logger_under_one_name(tmp_path):
    if not any(__import__("importlib").util.find_spec(m) for m in ("tensorboardX", "tensorboard")):
        pytest.skip("logger=tensorboard needs tensorboard or tensorboardX (the `test` extra installs tensorboardX)")
    # its own process: W&B keeps per-process state (its settings, the run directory) across runs
    import os
    import subprocess
    import sys

    from tests.helpers import REPO, TINY

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-m", "pfl", *TINY, *SMALL, "rounds=20", "eval_every=10",
                           "logger=[csv,wandb,tensorboard]", "logger.wandb.mode=offline", "plots=true",
                            f"hydra.run.dir={tmp_path}"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["round"]) for r in rows] == list(range(1, 21))
    assert all(r["train/loss"] for r in rows) and [int(r["round"]) for r in rows if r["heldout/initial_acc"]] == [10, 20]
    assert not [c for c in rows[0] if "accuracy" in c]  # the old names are gone
    assert set(summary["final"]) <= set(rows[0])  # summary.json's `final` uses the same names
    assert summary["final"]["heldout/pers_acc_2"] == float(rows[-1]["heldout/pers_acc_2"])

    # the scalars in one event file; the end-of-run hparams, images and text may follow in a second one
    # (Lightning closes the writer when fit ends): TensorBoard reads every file of the folder as one run
    files = sorted(glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*")))
    assert 1 <= len(files) <= 2
    tb = [e for f in files for e in _events(f)]
    assert sorted(step for step, tag in tb if tag == "train/loss") == list(range(1, 21))
    assert sorted(step for step, tag in tb if tag == "heldout/pers_acc_2") == [10, 20]
    # the HParams tab: the config and the final metrics, once; the plots as images; the config as text
    values = [v for f in files for v in _values(f)]
    assert [v.metadata.plugin_data.plugin_name for v in values if v.tag == "_hparams_/session_start_info"] == ["hparams"]
    hp = next(v for v in values if v.tag == "_hparams_/experiment").metadata.plugin_data.content
    assert b"hparams/pers_acc_2" in hp and b"config/algorithm/_target_" in hp and b"zeta" in hp
    final = {v.tag: v.simple_value for v in values if v.tag.startswith("hparams/")}
    assert final["hparams/pers_acc_2"] == pytest.approx(summary["personalized_accuracy"]["2"], abs=1e-6)
    images = {v.tag: v.image for v in values if v.HasField("image")}
    assert "plots/personalization_curve" in images and images["plots/personalization_curve"].encoded_image_string[:4] == b"\x89PNG"
    (text,) = [v for v in values if v.tag.startswith("config")]
    assert b"rounds: 20" in text.tensor.string_val[0]

    (wb,) = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))
    blob = open(wb, "rb").read()
    assert blob.count(b"train/loss") >= 20 and b"heldout/pers_acc_2" in blob
    assert b"personalized_accuracy" not in blob  # not a second name for the same number
    assert b"charts/personalization_curve" in blob and b"plots/personalization_curve" in blob  # distinct keys


@pytest.mark.parametrize("arg,words", [
    ("+trainer.foo=1", "trainer.foo=1 is not allowed: expected a pl.Trainer setting"),
    ("+trainer.precison=16-mixed", "did you mean trainer.precision?"),
    ("+trainer.max_steps=3", "pfl sets it (use rounds)"),
    ("trainer.precision=64-true", "64-true cannot run"),
    ("trainer.log_every_n_steps=0", "expected an integer >= 1"),
])
def test_unknown_or_owned_trainer_keys_are_one_line_errors(arg, words):
    line = precheck([arg])
    assert line is not None and words in line and "\n" not in line


def test_trainer_settings_reach_pl_trainer(tmp_path, monkeypatch):
    seen = {}

    class Spy(pl.Trainer):
        def __init__(self, **kwargs):
            seen.update(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(pl, "Trainer", Spy)
    train(compose_cfg(SMALL + ["rounds=4", "eval_every=4", "trainer.precision=bf16-mixed",
                               "trainer.log_every_n_steps=3", "+trainer.benchmark=false"]), tmp_path)
    assert (seen["precision"], seen["log_every_n_steps"], seen["benchmark"]) == ("bf16-mixed", 3, False)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["round"]) for r in rows] == [3, 4]  # training rows every 3 rounds; the evaluation's always


def test_progress_bar_total_after_resume_and_switches(tmp_path, capsys, monkeypatch):
    args = SMALL + ["eval_every=100", "checkpoint_every=1", "trainer.enable_progress_bar=true"]
    train(compose_cfg(args + ["rounds=2"]), tmp_path)
    capsys.readouterr()
    train(compose_cfg(args + ["rounds=4", "resume=true"]), tmp_path)
    out = capsys.readouterr().out
    assert "rounds:" in out and "2/4" in out and "4/4" in out
    assert "/?" not in out and "Training" not in out and "Epoch" not in out  # no fragments without a total

    train(compose_cfg(SMALL + ["rounds=1", "eval_every=1"]), tmp_path / "default")  # not a terminal: no bar
    assert "rounds:" not in capsys.readouterr().out
    monkeypatch.setenv("TQDM_DISABLE", "1")
    train(compose_cfg(args + ["rounds=1"]), tmp_path / "off")
    assert "rounds:" not in capsys.readouterr().out
    assert json.loads((tmp_path / "off" / "summary.json").read_text())["rounds"] == 1
