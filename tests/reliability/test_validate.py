"""The shared data validator (pfl.data.validate) on real damaged files, through the real command line.

Each case writes a LEAF json or TFF h5 data set in tmp_path, damages one client, and runs
`pfl.cli.main()` in this process: exit 2, one `error:` line naming the file, the client and the
offending value, no traceback, no summary.json.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from pfl.data.download import DataError
from pfl.data.federated import FederatedData, Population
from pfl.data.validate import check_data
from tests.cli.test_bad_input import DATA_FREE, _leaf, cli, one_error_line


def _damage_user(root, user: str, field: str, row: int, value) -> None:
    p = root / "train" / "all.json"
    d = json.loads(p.read_text())
    ex = d["user_data"][user][field]
    if field == "x":
        ex[row][5] = value
    else:
        ex[row] = value
    p.write_text(json.dumps(d))  # json writes NaN / Infinity as such, and reads them back


def _run_leaf(tmp_path, capsys, monkeypatch, *extra):
    return cli(DATA_FREE + ["dataset=femnist_leaf", f"dataset.root={tmp_path}/leaf",
                            f"dataset.cache_dir={tmp_path}/cache", "dataset.train_clients=4", "model=mlp",
                            f"hydra.run.dir={tmp_path}/run", *extra], capsys, monkeypatch)


LEAF = [("label-too-large-late-row", "y", 7, 62, ["label 62 is not in [0, 62)"]),
        ("feature-nan", "x", 4, math.nan, ["feature value nan is not a finite number"])]


@pytest.mark.parametrize("field,row,value,words", [r[1:] for r in LEAF], ids=[r[0] for r in LEAF])
def test_damaged_leaf_client_is_named(field, row, value, words, tmp_path, capsys, monkeypatch):
    _leaf(tmp_path / "leaf")
    _damage_user(tmp_path / "leaf", "u5", field, row, value)  # a held-out user, not the first rows
    code, out, err = _run_leaf(tmp_path, capsys, monkeypatch)
    one_error_line(code, out, err, 2, [str(tmp_path / "leaf" / "train" / "all.json"), "client u5", *words])
    assert not (tmp_path / "run" / "summary.json").exists()


def test_leaf_whose_clients_are_all_empty(tmp_path, capsys, monkeypatch):
    _leaf(tmp_path / "leaf", n=0)
    code, out, err = _run_leaf(tmp_path, capsys, monkeypatch)
    one_error_line(code, out, err, 2, ["femnist_leaf", "training clients has training examples"])


def test_emnist_h5_label_out_of_range(tmp_path, capsys, monkeypatch):
    import h5py

    root = tmp_path / "emnist"
    root.mkdir()
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        with h5py.File(root / f"fed_emnist_{split}.h5", "w") as f:
            for cid in ("w0", "w1", "w2"):
                labels = rng.integers(0, 62, 5)
                if split == "test" and cid == "w2":
                    labels[3] = 99
                f.create_dataset(f"examples/{cid}/pixels", data=rng.random((5, 28, 28)).astype(np.float32))
                f.create_dataset(f"examples/{cid}/label", data=labels)
    code, out, err = cli(DATA_FREE + ["dataset=emnist", f"dataset.root={root}", f"dataset.cache_dir={tmp_path}/cache",
                                      "dataset.train_clients=2", "model=mlp", f"hydra.run.dir={tmp_path}/run"],
                         capsys, monkeypatch)
    one_error_line(code, out, err, 2, ["fed_emnist_test.h5", "client w2", "label 99 is not in [0, 62)"])


@pytest.mark.parametrize("x,y,words", [
    ([[0.5]] * 3, [0, -1, 2], r"f.json, client u: label -1 is not in \[0, 62\)"),
    ([[0.5]] * 3, [0, 1.5, 2], r"label 1.5 is not an integer class"),
    ([[0.5], [math.inf], [0.1]], [0, 1, 2], r"feature value inf is not a finite number"),
    ([[0.5], [0.1, 0.2], [0.1]], [0, 1, 2], r"examples of uneven shape"),
    ([[0.5], [None], [0.1]], [0, 1, 2], r"features of type object"),
    ([[0.5]] * 3, [0, 1], r"3 inputs but 2 labels"),
])
def test_check_client_on_raw_examples(x, y, words):
    from pfl.data.validate import check_client

    with pytest.raises(DataError, match=words):
        check_client(x, y, 62, "f.json, client u")


def _data(train_y, test_y=None, x_value=0.0) -> FederatedData:
    x = torch.full((3, 2), x_value)
    pop = Population.from_clients(["a", "b"], [x, x], [train_y, torch.zeros(3, dtype=torch.long)],
                                  [x, x], [test_y if test_y is not None else torch.zeros(3, dtype=torch.long)] * 2)
    return FederatedData("custom", pop, pop.subset([1]), num_classes=4)


def test_check_data_on_a_data_set_from_outside_the_loaders():
    ok = _data(torch.tensor([0, 1, 3]))
    check_data(ok)
    assert ok.info["validated"]
    with pytest.raises(DataError, match=r"dataset custom, client a: label 4 is not in \[0, 4\)"):
        check_data(_data(torch.tensor([0, 4, 1])))
    with pytest.raises(DataError, match="client a: feature value inf"):
        check_data(_data(torch.tensor([0, 1, 2]), x_value=math.inf))
    bad = _data(torch.tensor([0, 1, 2]))
    bad.train.test.counts = torch.tensor([3])  # one client's test examples missing from the pairing
    with pytest.raises(DataError, match="must pair up"):
        check_data(bad)


def test_population_without_test_examples():  # found by the property suite: an IndexError in the evaluation
    x = torch.zeros(3, 2)
    y = torch.zeros(3, dtype=torch.long)
    pop = Population.from_clients(["a", "b"], [x, x], [y, y], [x[:0], x[:0]], [y[:0], y[:0]])
    with pytest.raises(DataError, match="none of its 2 training clients has test examples"):
        check_data(FederatedData("custom", pop, pop.subset([1]), num_classes=4))
