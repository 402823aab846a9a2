"""The bad-input table of docs/reliability.md, row by row, through the real command line.

Every row runs `pfl.cli.main()` in this process with sys.argv set (the same code path as
`python -m pfl`, minus the interpreter start) and checks the contract: the exit status, exactly
one line starting with `error:` that names what is wrong (and what is allowed), no traceback,
and no summary.json. Rows that need files (data, checkpoints) build them in tmp_path; rows that
need a finished run copy one tiny run made once for the module. `ROW_IDS` is what the docs
table is checked against (tests/cli/test_bad_input.py::test_docs_table_lists_every_row).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pfl.cli import main
from tests.helpers import DROP, REPO, TINY, tiny

DATA_FREE = tiny({"dataset.num_clients": DROP, "dataset.train_clients": DROP, "dataset.max_examples": DROP,
                  "dataset.dim": DROP})  # for data sets other than the synthetic default


def cli(args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["pfl", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def one_error_line(code: int, out: str, err: str, want_code: int, words: list[str]) -> str:
    assert code == want_code, err[-3000:]
    assert "Traceback" not in out + err, err[-3000:]
    lines = re.split(r"[\r\n]|\x1b\[A", err)  # progress bars redraw with \r and cursor-up; a terminal shows lines
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, err[-3000:]
    for w in words:
        assert w in errors[0], errors[0]
    return errors[0]


# -- rows found while composing the command line (no run starts) ------------------------------
COMPOSE = [
    ("unknown-algorithm", ["algorithm=nope"], ["algorithm=nope", "choose one of", "reptile"]),
    ("unknown-model", ["model=nope"], ["model=nope", "mlp"]),
    ("unknown-dataset", ["dataset=nope"], ["dataset=nope", "shakespeare"]),
    ("unknown-server-opt", ["server_opt=nope"], ["server_opt=nope", "adam"]),
    ("unknown-key", ["nosuchkey=1"], ["unknown setting 'nosuchkey'", "--cfg job"]),
    ("typo-key", ["algoritm=reptile"], ["unknown setting 'algoritm'", "did you mean 'algorithm'"]),
    ("typo-key-with-plus", ["+algoritm=reptile"], ["unknown setting 'algoritm'", "did you mean 'algorithm'"]),
    ("typo-nested-key", ["client_opt.lrr=0.1"], ["did you mean 'client_opt.lr'"]),
    ("typo-nested-key-with-plus", ["+client_opt.lrr=0.1"], ["did you mean 'client_opt.lr'"]),
    ("typo-personalization-key", ["personalization.heldout_clent=3"], ["did you mean 'personalization.heldout_clients'"]),
    ("typo-key-of-another-option", ["client_opt=adam", "client_opt.bata1=0.9"], ["did you mean 'client_opt.beta1'"]),
    ("wrong-type-int", ["rounds=abc"], ["rounds=abc", "an integer"]),
    ("wrong-type-bool", ["personalization.local_baseline=maybe"], ["personalization.local_baseline=maybe", "true or false"]),
    ("not-a-list", ["personalization.epochs=3"], ["personalization.epochs", "list"]),
    ("zero-rounds", ["rounds=0"], ["rounds=0", ">= 1"]),
    ("negative-rounds", ["rounds=-5"], ["rounds=-5", ">= 1"]),
    ("zero-clients-per-round", ["clients_per_round=0"], ["clients_per_round=0", ">= 1"]),
    ("zeta-above-1", ["zeta=1.5"], ["zeta=1.5", "[0, 1]"]),
    ("zeta-negative", ["zeta=-0.1"], ["zeta=-0.1", "[0, 1]"]),
    ("zero-eval-every", ["eval_every=0"], ["eval_every=0", ">= 1"]),
    ("negative-checkpoint-every", ["checkpoint_every=-1"], ["checkpoint_every=-1", ">= 0"]),
    ("negative-heldout-clients", ["personalization.heldout_clients=-3"], ["personalization.heldout_clients=-3", ">= 1"]),
    ("negative-train-clients", ["personalization.train_clients=-1"], ["personalization.train_clients=-1", ">= 0"]),
    ("zero-personalization-epoch", ["personalization.epochs=[0]"], ["personalization.epochs", ">= 1"]),
    ("unknown-population", ["personalization.population=all"], ["personalization.population='all'", "heldout, train or both"]),
    ("train-population-without-clients", ["personalization.population=train", "personalization.train_clients=0"],
     ["personalization.population='train'", "train_clients other than 0"]),
    ("target-accuracy-above-1", ["personalization.target_accuracy=2"], ["personalization.target_accuracy=2"]),
    ("negative-client-lr", ["client_opt.lr=-1"], ["client_opt.lr=-1", "> 0"]),
    ("zero-batch-size", ["client_opt.batch_size=0"], ["client_opt.batch_size=0"]),
    ("zero-server-lr", ["server_opt.lr=0"], ["server_opt.lr=0", "> 0"]),
    ("momentum-out-of-range", ["server_opt=sgdm", "server_opt.momentum=1.5"], ["server_opt.momentum=1.5", "[0, 1)"]),
    ("zero-local-epochs", ["algorithm.local_epochs=0"], ["algorithm.local_epochs=0", ">= 1"]),
    ("unknown-backend", ["engine.backend=gpu"], ["engine.backend", "vmap"]),
    ("zero-eval-chunk", ["engine.eval_chunk_size=0"], ["engine.eval_chunk_size=0", ">= 1"]),
    ("zero-nodes", ["trainer.num_nodes=0"], ["trainer.num_nodes=0", ">= 1"]),
    ("unknown-device", ["device=tpu"], ["device", "cpu"]),
    ("negative-dataset-count", ["dataset.num_clients=-4"], ["dataset.num_clients=-4"]),
    ("bad-resume-value", ["resume=maybe"], ["resume='maybe'", "auto"]),
    ("init-from-missing-path", ["init_from=/nonexistent/run"], ["init_from", "existing run directory"]),
    ("unknown-sweep", ["+sweep=nope"], ["sweep=nope", "fedavg_e_lr"]),
]


@pytest.mark.parametrize("args,words", [r[1:] for r in COMPOSE], ids=[r[0] for r in COMPOSE])
def test_bad_setting(args, words, tmp_path, capsys, monkeypatch):
    code, out, err = cli(TINY + args + [f"hydra.run.dir={tmp_path}/run"], capsys, monkeypatch)
    one_error_line(code, out, err, 2, words)
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, err  # nothing else at all
    assert not (tmp_path / "run").exists()  # found before anything is written


def test_output_dir_under_a_file(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    code, out, err = cli(TINY + [f"hydra.run.dir={tmp_path}/file/run"], capsys, monkeypatch)
    one_error_line(code, out, err, 2, ["hydra.run.dir=", "cannot be written", "choose a writable folder"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the file case above covers root")
def test_output_dir_read_only(tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code, out, err = cli(TINY + [f"hydra.run.dir={ro}/run"], capsys, monkeypatch)
    finally:
        ro.chmod(0o700)
    one_error_line(code, out, err, 2, ["cannot be written", "Permission denied"])


# -- data files: garbage, empty, truncated, of another layout ---------------------------------
def _h5(path: Path, layout: bool = True) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        if layout:
            for cid in ("a", "b", "c"):
                f.create_dataset(f"examples/{cid}/snippets", data=np.array([b"To be or not to be" * 20] * 3))
        else:
            f.create_dataset("other", data=np.zeros(3))


def _shakespeare_root(tmp: Path, kind: str) -> Path:
    root = tmp / "shakespeare"
    root.mkdir()
    for name in ("shakespeare_train.h5", "shakespeare_test.h5"):
        p = root / name
        if kind == "garbage":
            p.write_bytes(os.urandom(4096))
        elif kind == "empty":
            p.write_bytes(b"")
        elif kind == "truncated":
            _h5(p)
            p.write_bytes(p.read_bytes()[:2048])
        elif kind == "layout":
            _h5(p, layout=False)
    if kind == "archive":
        for p in list(root.iterdir()):
            p.unlink()
        (root / "shakespeare.tar.bz2").write_bytes(os.urandom(1000))
    return root


H5 = [("h5-garbage", "garbage", ["shakespeare_train.h5", "not readable as shakespeare data"]),
      ("h5-empty", "empty", ["not readable as shakespeare data"]),
      ("h5-truncated", "truncated", ["not readable as shakespeare data"]),
      ("h5-other-layout", "layout", ["not readable as shakespeare data", "examples"]),
      ("tar-archive-garbage", "archive", ["shakespeare.tar.bz2", "corrupted or incomplete"])]


@pytest.mark.parametrize("kind,words", [r[1:] for r in H5], ids=[r[0] for r in H5])
def test_bad_h5_or_archive(kind, words, tmp_path, capsys, monkeypatch):
    root = _shakespeare_root(tmp_path, kind)
    code, out, err = cli(DATA_FREE + ["dataset=shakespeare", f"dataset.root={root}", f"dataset.cache_dir={tmp_path}/cache",
                                      f"hydra.run.dir={tmp_path}/run"], capsys, monkeypatch)
    one_error_line(code, out, err, 2, words)
    assert not (tmp_path / "run" / "summary.json").exists()


def _leaf(root: Path, users=("u1", "u2", "u3", "u4", "u5", "u6"), n=8, width=784) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
        data = {u: {"x": rng.random((n, width)).round(3).tolist(), "y": rng.integers(0, 62, n).tolist()} for u in users}
        (root / split / "all.json").write_text(json.dumps({"users": list(users), "num_samples": [n] * len(users),
                                                           "user_data": data}))


JSON = [("json-garbage", lambda p: p.write_bytes(os.urandom(500)), ["all.json", "not a LEAF json shard"]),
        ("json-empty", lambda p: p.write_text(""), ["not a LEAF json shard", "JSONDecodeError"]),
        ("json-truncated", lambda p: p.write_text(p.read_text()[: len(p.read_text()) // 2]), ["not a LEAF json shard"]),
        ("json-other-layout", lambda p: p.write_text('{"users": [], "user_data": [1, 2]}'), ["not a LEAF json shard"]),
        ("json-wrong-example-shape", None, ["not femnist examples"]),
        ("json-missing", lambda p: p.unlink(), ["must hold train/*.json and test/*.json"])]


@pytest.mark.parametrize("damage,words", [r[1:] for r in JSON], ids=[r[0] for r in JSON])
def test_bad_leaf_json(damage, words, tmp_path, capsys, monkeypatch):
    root = tmp_path / "leaf"
    _leaf(root, width=784 if damage else 100)
    if damage:
        damage(root / "train" / "all.json")
    code, out, err = cli(DATA_FREE + ["dataset=femnist_leaf", f"dataset.root={root}", f"dataset.cache_dir={tmp_path}/cache",
                                      "dataset.train_clients=4", "model=mlp", f"hydra.run.dir={tmp_path}/run"],
                         capsys, monkeypatch)
    line = one_error_line(code, out, err, 2, words)
    if "must hold" in words[0]:
        assert line.startswith(f"error: dataset.root={root} must hold"), line  # the folder as given, never "None"


def test_damaged_npz_cache_is_rebuilt_never_unpickled(tmp_path, capsys, monkeypatch):
    root = tmp_path / "leaf"
    _leaf(root)
    args = DATA_FREE + ["dataset=femnist_leaf", f"dataset.root={root}", f"dataset.cache_dir={tmp_path}/cache",
                        "dataset.train_clients=4", "model=mlp", "rounds=1", "eval_every=1", "clients_per_round=2",
                        "personalization.train_clients=0", "personalization.curve_epochs=1", "personalization.epochs=[1]"]
    assert cli(args + [f"hydra.run.dir={tmp_path}/a"], capsys, monkeypatch)[0] == 0
    (npz,) = (tmp_path / "cache").rglob("*.npz")
    marker = tmp_path / "PWNED"
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    np.savez(npz, ids=np.array([Evil()], dtype=object))  # a pickled object where arrays belong
    code, out, err = cli(args + [f"hydra.run.dir={tmp_path}/b"], capsys, monkeypatch)
    assert code == 0, err[-3000:]
    assert not marker.exists() and (tmp_path / "b" / "summary.json").is_file()
    assert pickle  # (the module the object would need)


# -- model and data, counts beyond the population -------------------------------------------
def test_model_does_not_fit_the_data(tmp_path, capsys, monkeypatch):
    code, out, err = cli(TINY + ["model=emnist_cnn", f"hydra.run.dir={tmp_path}/run"], capsys, monkeypatch)
    one_error_line(code, out, err, 2, ["model='emnist_cnn'", "dataset synthetic", "shape [20]", "EmnistCNN"])
    assert len(err.splitlines()) < 5  # not 109 lines
    assert not (tmp_path / "run" / "summary.json").exists()


def test_more_clients_per_round_than_clients(tmp_path, capsys, monkeypatch):
    code, out, err = cli(TINY + ["clients_per_round=999", f"hydra.run.dir={tmp_path}/run"], capsys, monkeypatch)
    one_error_line(code, out, err, 2, ["clients_per_round=999", "16 clients"])


# -- checkpoints: init_from and resume ------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from pfl.run import train
    from tests.helpers import compose_cfg

    d = tmp_path_factory.mktemp("finished") / "run"
    train(compose_cfg([]), d)
    return d


def _evil(path: Path, marker: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {"round": torch.tensor(2)}, "pfl": Evil()}, path)


def _write(kind: str, path: Path, tmp: Path, good: Path | None = None) -> None:
    if kind == "garbage":
        path.write_bytes(os.urandom(3000))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[:4000])
    elif kind == "malicious":
        _evil(path, tmp / "PWNED")
    elif kind == "not-pfl":
        torch.save({"weights": torch.zeros(3)}, path)


CKPT = [("garbage", ["is not a"]), ("empty", ["is not a complete checkpoint"]),
        ("truncated", ["is not a complete checkpoint"]),
        ("malicious", ["holds objects other than tensors", "posix.system", "refused"]),
        ("not-pfl", ["is not a pfl checkpoint"])]


@pytest.mark.parametrize("kind,words", CKPT, ids=[f"init-from-{k}" for k, _ in CKPT])
def test_init_from_a_bad_file(kind, words, finished_run, tmp_path, capsys, monkeypatch):
    f = tmp_path / "model.ckpt"
    _write(kind, f, tmp_path, finished_run / "checkpoints" / "last.ckpt")
    code, out, err = cli(TINY + [f"init_from={f}", f"hydra.run.dir={tmp_path}/run"], capsys, monkeypatch)
    one_error_line(code, out, err, 2, ["init_from", str(f), *words])
    assert not (tmp_path / "PWNED").exists()  # nothing ran


def test_init_from_another_model(finished_run, tmp_path, capsys, monkeypatch):
    code, out, err = cli(TINY + [f"init_from={finished_run}", "model.hidden=[7]", f"hydra.run.dir={tmp_path}/run"],
                         capsys, monkeypatch)
    one_error_line(code, out, err, 2, ["init_from", "same model"])


def _copy(run: Path, tmp: Path) -> Path:
    dst = tmp / "run"
    shutil.copytree(run, dst)
    return dst


@pytest.mark.parametrize("kind,words", CKPT[:4], ids=[f"resume-{k}-last-ckpt" for k, _ in CKPT[:4]])
def test_resume_from_a_bad_last_ckpt(kind, words, finished_run, tmp_path, capsys, monkeypatch):
    run = _copy(finished_run, tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    _write(kind, last, tmp_path, finished_run / "checkpoints" / "last.ckpt")
    before = (run / "summary.json").read_text(), (run / "metrics.csv").read_text()
    code, out, err = cli(TINY + ["resume=true", f"hydra.run.dir={run}"], capsys, monkeypatch)
    one_error_line(code, out, err, 2, ["resume", "last.ckpt", *words])
    assert not (tmp_path / "PWNED").exists()
    assert ((run / "summary.json").read_text(), (run / "metrics.csv").read_text()) == before  # untouched


def test_resume_with_nothing_to_resume(tmp_path, capsys, monkeypatch):
    code, out, err = cli(TINY + ["resume=true", f"hydra.run.dir={tmp_path}/run"], capsys, monkeypatch)
    one_error_line(code, out, err, 2, ["nothing to resume", str(tmp_path / "run"), "resume=auto"])
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_resume_with_another_configuration(finished_run, tmp_path, capsys, monkeypatch):
    run = _copy(finished_run, tmp_path)
    def files():  # Hydra's own record of the latest command (.hydra/) and the log aside
        return {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*")
                if p.is_file() and p.suffix != ".log" and ".hydra" not in p.parts}

    before = files()
    code, out, err = cli(TINY + ["resume=true", "client_opt.lr=0.5", "zeta=0.5", "rounds=9", "logger=csv",
                                 f"hydra.run.dir={run}"], capsys, monkeypatch)
    line = one_error_line(code, out, err, 2, ["differs from the checkpoint", "client_opt.lr: 0.02 -> 0.5",
                                              "zeta: 1.0 -> 0.5"])
    assert "rounds" not in line.split("(only")[0]  # rounds may change
    assert files() == before  # nothing rewritten, not even config.yaml


def test_resume_auto_starts_when_there_is_nothing(tmp_path, capsys, monkeypatch):
    args = TINY + ["rounds=2", "resume=auto", f"hydra.run.dir={tmp_path}/run"]
    code, out, err = cli(args, capsys, monkeypatch)
    assert code == 0, err[-3000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "completed"


# -- faults while training --------------------------------------------------------------------
def test_divergence_is_a_clean_stop(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    # LEAF's Synthetic(1, 1) at lr 1e9: round 1 still ends finite, round 2 does not (a checkpoint to keep)
    code, out, err = cli(TINY + ["dataset=synthetic_leaf", "client_opt.lr=1e9", "checkpoint_every=1", f"hydra.run.dir={run}"],
                         capsys, monkeypatch)
    line = one_error_line(code, out, err, 3, ["training diverged at round 2 (loss nan)",
                                              "the last good checkpoint (round 1) is kept at", "try a smaller client_opt.lr"])
    assert str(run / "checkpoints" / "last.ckpt") in line
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "diverged" and s["rounds_completed"] == 1 and s["last_checkpoint_round"] == 1
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert int(ckpt["state_dict"]["round"]) == 1
    assert all(torch.isfinite(v).all() for k, v in ckpt["state_dict"].items() if k.startswith("global_params."))


def test_disk_full_while_saving_a_checkpoint(tmp_path, capsys, monkeypatch):
    import pytorch_lightning as pl

    real, calls = pl.Trainer.save_checkpoint, []

    def save(self, path, *a, **kw):
        calls.append(path)
        if len(calls) >= 2:  # the first checkpoint is written; the disk is full for the next
            Path(path).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, path, *a, **kw)

    monkeypatch.setattr(pl.Trainer, "save_checkpoint", save)
    run = tmp_path / "run"
    code, out, err = cli(TINY + [f"hydra.run.dir={run}"], capsys, monkeypatch)
    one_error_line(code, out, err, 1, ["could not write the checkpoint", "No space left on device",
                                       "the previous checkpoint (round 2) is kept"])
    assert int(torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]["round"]) == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]  # no partial file left
    assert not (run / "summary.json").exists()


# -- the docs table -----------------------------------------------------------------------------
ROW_IDS = ([r[0] for r in COMPOSE] + ["output-dir-under-a-file", "output-dir-read-only"] + [r[0] for r in H5]
           + [r[0] for r in JSON] + ["npz-cache-damaged", "model-data-shape-mismatch", "clients-per-round-above-population"]
           + [f"init-from-{k}" for k, _ in CKPT] + ["init-from-another-model"]
           + [f"resume-{k}-last-ckpt" for k, _ in CKPT[:4]]
           + ["resume-nothing-to-resume", "resume-other-configuration", "resume-auto-nothing", "divergence",
              "disk-full-checkpoint", "sigterm-mid-evaluation", "sigint-mid-evaluation"])


def test_docs_table_lists_every_row():
    doc = (REPO / "docs" / "reliability.md").read_text()
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|", doc, flags=re.M)
    assert sorted(rows) == sorted(ROW_IDS)
    assert len(ROW_IDS) >= 40
