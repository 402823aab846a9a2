"""Loaders on tiny files generated in the exact original formats (TFF h5, CIFAR pickles, LEAF json)."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pfl.data import cifar100, text
from pfl.data.cache import Source
from pfl.data.download import DataError
from pfl.data.emnist import load_emnist
from pfl.data.fed_cifar100 import load_fed_cifar100
from pfl.data.leaf import load_shakespeare_leaf
from pfl.data.partition import dirichlet_label_skew_paired
from pfl.data.shakespeare import load_shakespeare


def _emnist_files(root: Path, prefix="fed_emnist", clients=6, classes=62, seed=0):
    g = np.random.default_rng(seed)
    truth = {}
    for split, (lo, hi) in (("train", (3, 9)), ("test", (1, 4))):
        with h5py.File(root / f"{prefix}_{split}.h5", "w") as f:
            for c in range(clients):
                cid = f"f{clients - c:04d}_{c:02d}"  # written in reverse order: the loader sorts
                n = int(g.integers(lo, hi))
                pixels = (g.integers(0, 256, (n, 28, 28)) / 255.0).astype(np.float32)
                label = g.integers(0, classes, n).astype(np.int32)
                f.create_dataset(f"examples/{cid}/pixels", data=pixels)
                f.create_dataset(f"examples/{cid}/label", data=label)
                truth[(split, cid)] = (pixels, label)
    return truth


def test_emnist_h5_layout_split_and_pixels(tmp_path):
    truth = _emnist_files(tmp_path)
    data = load_emnist(root=str(tmp_path), cache_dir=str(tmp_path / "c"), train_clients=4)
    ids = sorted({cid for _, cid in truth})
    assert data.train.client_ids == ids[:4] and data.heldout.client_ids == ids[4:]
    assert data.num_classes == 62 and data.train.train.x.dtype == torch.uint8
    pixels, label = truth[("test", ids[5])]
    x = data.heldout.test.x[data.heldout.test.offsets[1]:][: len(label)]
    assert torch.equal(data.transform(x), torch.from_numpy(pixels))  # k/255 round-trips exactly
    assert data.heldout.test.y[data.heldout.test.offsets[1]:][: len(label)].tolist() == label.tolist()
    assert data.heldout.test.y.dtype == torch.int64
    inv = load_emnist(root=str(tmp_path), cache_dir=str(tmp_path / "c"), train_clients=4, invert=True)
    torch.testing.assert_close(inv.transform(x), 1.0 - torch.from_numpy(pixels))
    with pytest.raises(DataError, match="fed_emnist_digitsonly_train.h5"):
        load_emnist(root=str(tmp_path), cache_dir=str(tmp_path / "c"), only_digits=True)


def test_emnist_digits_only_and_counts(tmp_path):
    _emnist_files(tmp_path, "fed_emnist_digitsonly", clients=5, classes=10)
    data = load_emnist(root=str(tmp_path), cache_dir=str(tmp_path / "c"), only_digits=True, train_clients=3,
                       heldout_clients=1)
    assert data.num_classes == 10 and len(data.train) == 3 and len(data.heldout) == 1
    with pytest.raises(Exception, match="dataset.heldout_clients"):
        load_emnist(root=str(tmp_path), cache_dir=str(tmp_path / "c"), only_digits=True, train_clients=3,
                    heldout_clients=5)


def test_zeta_permutes_train_and_test_alike(tmp_path):
    _emnist_files(tmp_path, clients=10)
    kw = dict(root=str(tmp_path), cache_dir=str(tmp_path / "c"), train_clients=6)
    base = load_emnist(**kw)
    perm = load_emnist(zeta=0.5, seed=3, **kw)
    for pop in ("train", "heldout"):
        mask, maps = perm.info["permuted"][pop], perm.info["label_maps"][pop]
        assert mask.dtype == torch.bool and int(mask.sum()) == round(0.5 * len(mask))
        for split in ("train", "test"):
            a, b = getattr(getattr(base, pop), split), getattr(getattr(perm, pop), split)
            owner = torch.repeat_interleave(torch.arange(len(a.counts)), a.counts)
            assert torch.equal(b.y, maps[owner, a.y]) and torch.equal(a.x, b.x)
        ident = maps[~mask] == torch.arange(62)
        assert bool(ident.all()) and not bool((maps[mask] == torch.arange(62)).all(1).any())
    assert torch.equal(load_emnist(zeta=0.5, seed=3, **kw).train.train.y, perm.train.train.y)


def _shakespeare_files(root: Path, clients: dict[str, tuple[list[bytes], list[bytes]]]):
    for i, split in enumerate(("train", "test")):
        with h5py.File(root / f"shakespeare_{split}.h5", "w") as f:
            for cid, snippets in clients.items():
                f.create_dataset(f"examples/{cid}/snippets", data=np.array(snippets[i], dtype=object),
                                 dtype=h5py.string_dtype("ascii"))


def test_shakespeare_rows_and_special_tokens(tmp_path):
    _shakespeare_files(tmp_path, {"A": ([b"abc~"], [b"d"]), "B": ([b"x" * 10], [b"y"]), "C": ([b"z"], [b"q"])})
    data = load_shakespeare(root=str(tmp_path), cache_dir=str(tmp_path / "c"), train_clients=2, seq_len=4)
    a = text.CHAR_VOCAB.index
    # "abc~" -> BOS a b c OOV EOS, padded to 10 = rows [BOS a b c OOV], [EOS 0 0 0 0];
    # inputs are a row's first 4 ids, targets its last 4 (as TFF: a row's first id is never a target)
    x, y = data.train.train.x[:2].long(), data.train.train.y[:2]
    assert x.tolist() == [[text.BOS, a("a") + 1, a("b") + 1, a("c") + 1], [text.EOS, 0, 0, 0]]
    assert y.tolist() == [[a("a") + 1, a("b") + 1, a("c") + 1, text.OOV], [0, 0, 0, 0]]
    b_rows = data.train.train.y[2:].tolist()  # "x"*10 -> BOS x*10 EOS: 12 ids, rows [BOS x x x x] [x x x x x] [x EOS 0 0 0]
    assert b_rows[-1] == [text.EOS, 0, 0, 0]
    assert data.ignore_index == text.PAD and data.num_classes == text.VOCAB_SIZE == 90
    strict = load_shakespeare(root=str(tmp_path), cache_dir=str(tmp_path / "c"), train_clients=2, seq_len=4,
                              score_special=False)
    assert strict.train.train.y[:2].tolist() == [[a("a") + 1, a("b") + 1, a("c") + 1, 0], [0, 0, 0, 0]]
    assert strict.train.train.y[2:].tolist()[-1] == [0, 0, 0, 0]


def test_shakespeare_zeta_keeps_special_tokens(tmp_path):
    clients = {f"R{i}": ([b"the quick brown fox"], [b"jumps"]) for i in range(6)}
    _shakespeare_files(tmp_path, clients)
    kw = dict(root=str(tmp_path), cache_dir=str(tmp_path / "c"), train_clients=4, seq_len=8)
    base, perm = load_shakespeare(**kw), load_shakespeare(zeta=0.0, permute_inputs=True, **kw)
    maps = perm.info["label_maps"]["train"]
    assert bool(perm.info["permuted"]["train"].all())
    assert maps[:, list(text.SPECIAL)].equal(torch.tensor(text.SPECIAL).expand(4, 4))
    owner = torch.repeat_interleave(torch.arange(4), base.train.train.counts)
    assert perm.train.train.y.equal(maps[owner.unsqueeze(1), base.train.train.y])
    assert perm.train.train.x.long().equal(maps[owner.unsqueeze(1), base.train.train.x.long()])


def _cifar_pickles(root: Path, n_train=600, n_test=200, seed=0) -> dict[str, str]:
    g = np.random.default_rng(seed)
    d = root / "cifar-100-python"
    d.mkdir()
    md5 = {}
    for name, n in (("train", n_train), ("test", n_test)):
        obj = {b"data": g.integers(0, 256, (n, 3072), dtype=np.uint8),
               b"fine_labels": list(np.arange(n) % 100), b"coarse_labels": list(np.arange(n) % 20)}
        obj[b"fine_labels"] = [int(v) for v in obj[b"fine_labels"]]
        blob = pickle.dumps(obj, protocol=2)
        (d / name).write_bytes(blob)
        md5[name] = hashlib.md5(blob).hexdigest()
    return md5


def test_cifar100_pickles_dirichlet_and_channels(tmp_path, monkeypatch):
    md5 = _cifar_pickles(tmp_path)
    with pytest.raises(DataError, match="corrupted or incomplete"):  # published md5s: generated files are refused
        cifar100.load_cifar100(root=str(tmp_path), cache_dir=str(tmp_path / "c"), num_clients=5, train_clients=4)
    monkeypatch.setattr(cifar100, "SOURCE", Source("cifar100", ("train", "test"), cifar100.ARCHIVE, md5,
                                                    ("cifar-100-python",)))
    data = cifar100.load_cifar100(root=str(tmp_path), cache_dir=str(tmp_path / "c"), num_clients=5, train_clients=4)
    assert len(data.train) == 4 and len(data.heldout) == 1
    assert int(data.train.train.counts.sum() + data.heldout.train.counts.sum()) == 600
    assert int(data.train.test.counts.sum() + data.heldout.test.counts.sum()) == 200
    assert data.train.train.x.shape[1:] == (3, 32, 32) and data.info["model_kwargs"] == {"in_channels": 3, "in_features": 3072}
    raw = pickle.loads((tmp_path / "cifar-100-python" / "train").read_bytes())[b"data"]
    row = torch.from_numpy(raw.reshape(-1, 3, 32, 32))
    assert any(torch.equal(data.train.train.x[0], r) for r in row)  # channel-major 3x32x32, unchanged
    assert data.transform(data.train.train.x[:2]).dtype == torch.float32


def test_cifar_pickle_with_foreign_globals_is_refused(tmp_path, monkeypatch):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    evil = b"cos\nsystem\n(S'echo pwned'\ntR."
    for name in ("train", "test"):
        (d / name).write_bytes(evil)
    md5 = {n: hashlib.md5(evil).hexdigest() for n in ("train", "test")}
    monkeypatch.setattr(cifar100, "SOURCE", Source("cifar100", ("train", "test"), cifar100.ARCHIVE, md5,
                                                    ("cifar-100-python",)))
    with pytest.raises(DataError, match="refusing to load os.system|posix.system"):
        cifar100.load_cifar100(root=str(tmp_path), cache_dir=str(tmp_path / "c"), num_clients=5, train_clients=4)


def test_paired_dirichlet_gives_test_the_train_label_distribution():
    train_y, test_y = np.repeat(np.arange(10), 500), np.repeat(np.arange(10), 100)
    tr, te = dirichlet_label_skew_paired(train_y, test_y, 8, 0.5, np.random.default_rng(0))
    assert sorted(np.concatenate(tr)) == list(range(5000)) and sorted(np.concatenate(te)) == list(range(1000))
    for a, b in zip(tr, te):
        ha, hb = np.bincount(train_y[a], minlength=10), np.bincount(test_y[b], minlength=10)
        assert np.abs(ha / 5 - hb).max() <= 1.0  # same proportions, up to rounding


def test_fed_cifar100_h5(tmp_path):
    g = np.random.default_rng(0)
    for split, clients in (("train", 6), ("test", 3)):
        with h5py.File(tmp_path / f"fed_cifar100_{split}.h5", "w") as f:
            for c in range(clients):
                f.create_dataset(f"examples/{c}/image", data=g.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8))
                f.create_dataset(f"examples/{c}/label", data=g.integers(0, 100, 10).astype(np.int64))
                f.create_dataset(f"examples/{c}/coarse_label", data=g.integers(0, 20, 10).astype(np.int64))
    data = load_fed_cifar100(root=str(tmp_path), cache_dir=str(tmp_path / "c"), train_clients=4)
    assert len(data.train) == 4 and len(data.heldout) == 3
    assert data.train.client_ids[0] == "train/0" and data.heldout.client_ids[-1] == "test/2"
    assert data.train.train.counts.tolist() == [8] * 4 and data.train.test.counts.tolist() == [2] * 4
    with h5py.File(tmp_path / "fed_cifar100_test.h5") as f:
        img = torch.from_numpy(f["examples/2/image"][()]).permute(0, 3, 1, 2)
    seen = torch.cat([data.heldout.train.x[-8:], data.heldout.test.x[-2:]])
    assert sorted(map(bytes, seen.numpy())) == sorted(map(bytes, img.numpy()))  # HWC -> CHW, split within client


def test_shakespeare_leaf_json_pairs_users(tmp_path):
    def shard(users):
        return {"users": list(users), "num_samples": [len(v[1]) for v in users.values()],
                "user_data": {u: {"x": x, "y": y} for u, (x, y) in users.items()}}

    line = "To be, or not to be: that is the question. Whether 'tis nobler in the mind to su"
    assert len(line) == 80
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    (tmp_path / "train" / "a.json").write_text(json.dumps(shard({"u1": ([line] * 3, ["u"] * 3), "u2": ([line], ["x"])})))
    (tmp_path / "train" / "b.json").write_text(json.dumps(shard({"u3": ([line] * 2, ["y", "z"]), "u0": ([line], ["q"])})))
    (tmp_path / "test" / "a.json").write_text(json.dumps(shard({"u1": ([line], ["f"]), "u3": ([line], ["g"]),
                                                                 "u4": ([line], ["h"]), "u0": ([line], ["e"])})))
    data = load_shakespeare_leaf(root=str(tmp_path), cache_dir=str(tmp_path / "c"), train_clients=2)
    assert data.train.client_ids == ["u0", "u1"] and data.heldout.client_ids == ["u3"]
    assert data.info["unpaired_users_dropped"] == 2  # u2 (no test), u4 (no train)
    assert data.train.train.x.shape == (4, 80) and data.train.train.y.shape == (4,)
    assert data.info["model_kwargs"] == {"vocab_size": 90, "last_only": True}
    assert data.heldout.train.y.tolist() == [text.CHAR_VOCAB.index(c) + 1 for c in "yz"]
    with pytest.raises(DataError, match="dataset.root"):
        load_shakespeare_leaf(root=None)
