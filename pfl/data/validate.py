"""The one data validator every data set passes through at load time.

Two entry points, both raising `DataError` (a `ConfigError`: one line, exit status 2) that names
the file (where known), the client and the offending value:

- `check_client(x, y, num_classes, where)`: one client's raw examples as read from a file, before
  a loader casts them to its compact dtype (a cast to uint8 would turn NaN into 0 and -1 into 255,
  hiding the damage). Labels must be integers in [0, num_classes), features finite numbers.
- `check_data(data)`: an assembled `FederatedData` (every loader's result; `pfl.run.train` checks
  any data set that a loader did not): each population's client ids, train and test splits pair up
  (one count per client in both splits, counts summing to the examples), labels are in
  [0, num_classes) (or the data set's `ignore_index`), float features are finite, at least one
  training client has training examples, and each population has test examples.
"""

from __future__ import annotations

import numpy as np
import torch

from pfl.data.download import DataError


def _fail(where: str, what: str) -> None:
    raise DataError(f"{where}: {what}", key="dataset")


def check_client(x, y, num_classes: int, where: str, ignore_index: int | None = None) -> None:
    """Raw examples of one client (`where`: "FILE, client ID"); see the module docstring."""
    try:
        xa = np.asarray(x)
        ya = np.asarray(y)
    except (ValueError, TypeError) as exc:  # ragged lists
        _fail(where, f"examples of uneven shape ({exc})")
    if len(xa) != len(ya):
        _fail(where, f"{len(xa)} inputs but {len(ya)} labels")
    if xa.dtype.kind not in "biuf" and xa.dtype.kind != "S" and xa.dtype.kind != "U":
        _fail(where, f"features of type {xa.dtype} (expected numbers)")
    if xa.dtype.kind == "f" and xa.size and not np.isfinite(xa).all():
        _fail(where, f"feature value {xa[~np.isfinite(xa)].flat[0]} is not a finite number")
    _labels(ya, num_classes, where, ignore_index)


def _labels(y: np.ndarray, num_classes: int, where: str, ignore_index: int | None) -> None:
    if y.size == 0:
        return
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            _fail(where, f"label {y[bad].flat[0]} is not an integer class (expected integers in [0, {num_classes}))")
    elif y.dtype.kind not in "biu":
        _fail(where, f"labels of type {y.dtype} (expected integers in [0, {num_classes}))")
    bad = (y < 0) | (y >= num_classes)
    if ignore_index is not None:
        bad &= y != ignore_index
    if bad.any():
        _fail(where, f"label {y[bad].flat[0]} is not in [0, {num_classes})")


def check_data(data) -> None:
    """An assembled FederatedData; see the module docstring. Marks it `info["validated"]`."""
    source = data.info.get("source")
    name = f"dataset {data.name}" + (f" ({source})" if source else "")
    for pop_name in ("train", "heldout"):
        pop = getattr(data, pop_name)
        for split_name in ("train", "test"):
            split = getattr(pop, split_name)
            where = f"{name}, {pop_name} clients' {split_name} split"
            if len(split.counts) != len(pop.client_ids):
                _fail(where, f"{len(split.counts)} clients' examples for {len(pop.client_ids)} client ids "
                      "(train and test must pair up client by client)")
            total = int(split.counts.sum()) if len(split.counts) else 0
            if bool((split.counts < 0).any()) or total != len(split.x) or len(split.x) != len(split.y):
                _fail(where, f"client counts sum to {total} but the split holds {len(split.x)} inputs and "
                      f"{len(split.y)} labels")
            _check_split(split, pop.client_ids, data.num_classes, data.ignore_index, f"{name}, client")
    if not len(data.train) or int(data.train.train.counts.sum()) == 0:
        _fail(name, f"none of its {len(data.train)} training clients has training examples "
              "(at least one is needed)")
    for pop_name, pop in (("training", data.train), ("held-out", data.heldout)):
        if len(pop) and int(pop.test.counts.sum()) == 0:
            _fail(name, f"none of its {len(pop)} {pop_name} clients has test examples (personalization is "
                  "evaluated on them: at least one is needed)")
    data.info["validated"] = True


def _check_split(split, ids, num_classes: int, ignore_index: int | None, where: str) -> None:
    x, y = split.x, split.y
    if x.is_floating_point() and x.numel():
        bad = ~torch.isfinite(x.reshape(len(x), -1)).all(dim=1)
        if bool(bad.any()):
            row = int(bad.nonzero()[0, 0])
            value = x[row].reshape(-1)[~torch.isfinite(x[row].reshape(-1))][0].item()
            _fail(f"{where} {_owner(split, ids, row)}", f"feature value {value} is not a finite number")
    if y.is_floating_point() or y.dtype == torch.bool:
        _fail(where.rsplit(",", 1)[0], f"labels of type {y.dtype} (expected integers in [0, {num_classes}))")
    if y.numel():
        bad = (y < 0) | (y >= num_classes)
        if ignore_index is not None:
            bad &= y != ignore_index
        bad = bad.reshape(len(y), -1).any(dim=1)
        if bool(bad.any()):
            row = int(bad.nonzero()[0, 0])
            flat = y[row].reshape(-1)
            out = (flat < 0) | (flat >= num_classes)
            value = int(flat[out & (flat != ignore_index) if ignore_index is not None else out][0])
            _fail(f"{where} {_owner(split, ids, row)}", f"label {value} is not in [0, {num_classes})")


def _owner(split, ids, row: int) -> str:
    ends = torch.cumsum(split.counts, 0)
    i = int(torch.searchsorted(ends, torch.tensor(row), right=True))
    return str(ids[i]) if i < len(ids) else f"#{i}"
