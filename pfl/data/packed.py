"""Decoded clients as numpy arrays, and their assembly into a FederatedData.

Every real-data loader decodes its files into `Packed` splits (all clients'
examples back to back, `counts` per client: exactly what the cache .npz
stores), then `assemble` picks the training and held-out clients, applies the
ζ label permutations and wraps everything as torch tensors without copying.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from pfl.config.errors import check, is_int
from pfl.data.federated import FederatedData, Population, Split
from pfl.data.partition import zeta_permutations
from pfl.data.validate import check_data


@dataclass
class Packed:
    x: np.ndarray  # [total, ...]
    y: np.ndarray  # [total, ...]
    counts: np.ndarray  # [clients] int64

    @property
    def offsets(self) -> np.ndarray:
        return np.cumsum(self.counts) - self.counts

    def take(self, index: Sequence[int]) -> "Packed":
        """The clients at `index`, in that order (a contiguous range is a view)."""
        index = np.asarray(index, dtype=np.int64)
        counts = self.counts[index]
        starts = self.offsets[index]
        if len(index) and np.all(np.diff(index) == 1):
            lo, hi = starts[0], starts[-1] + counts[-1]
            return Packed(self.x[lo:hi], self.y[lo:hi], counts)
        rows = np.concatenate([np.arange(s, s + c) for s, c in zip(starts, counts)]) if len(index) else np.zeros(0, int)
        return Packed(self.x[rows], self.y[rows], counts)

    def owners(self) -> np.ndarray:
        """The client index of every example."""
        return np.repeat(np.arange(len(self.counts)), self.counts)

    def relabel(self, maps: np.ndarray) -> "Packed":
        """y -> maps[client, y] (per-client label maps [clients, classes])."""
        owner = self.owners().reshape((-1,) + (1,) * (self.y.ndim - 1))
        return Packed(self.x, maps[owner, self.y].astype(self.y.dtype), self.counts)

    def split(self, y_dtype=torch.int64) -> Split:
        return Split(torch.from_numpy(np.ascontiguousarray(self.x)),
                     torch.from_numpy(np.ascontiguousarray(self.y)).to(y_dtype),
                     torch.from_numpy(self.counts.astype(np.int64)))

    @staticmethod
    def from_lists(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], x_shape=(), x_dtype=None, y_dtype=None) -> "Packed":
        counts = np.array([len(x) for x in xs], dtype=np.int64)
        x = np.concatenate(xs) if len(xs) else np.zeros((0, *x_shape), x_dtype)
        y = np.concatenate(ys) if len(ys) else np.zeros((0,), y_dtype)
        return Packed(x, y, counts)

    @staticmethod
    def concat(packs: Sequence["Packed"]) -> "Packed":
        """The clients of several Packed, one after the other."""
        return Packed(np.concatenate([p.x for p in packs]), np.concatenate([p.y for p in packs]),
                      np.concatenate([p.counts for p in packs]))


def pack_arrays(prefix: str, p: Packed) -> dict[str, np.ndarray]:
    return {f"{prefix}_x": p.x, f"{prefix}_y": p.y, f"{prefix}_counts": p.counts}


def unpack_arrays(prefix: str, arrays: dict[str, np.ndarray]) -> Packed:
    return Packed(arrays[f"{prefix}_x"], arrays[f"{prefix}_y"], arrays[f"{prefix}_counts"])


def population_split(total: int, train_clients: int, heldout_clients: int | None, key: str = "dataset") -> tuple[range, range]:
    """First `train_clients` train; the next `heldout_clients` (None: all the rest) are held out."""
    check(is_int(train_clients) and 1 <= train_clients < total, f"{key}.train_clients", train_clients,
          f"an integer in [1, {total - 1}] (this data set has {total} clients)")
    rest = total - train_clients
    if heldout_clients is None:
        heldout_clients = rest
    check(is_int(heldout_clients) and 1 <= heldout_clients <= rest, f"{key}.heldout_clients", heldout_clients,
          f"null or an integer in [1, {rest}] ({total} clients, {train_clients} train)")
    return range(train_clients), range(train_clients, train_clients + heldout_clients)


def label_maps(num_clients: int, num_classes: int, zeta: float, rng: np.random.Generator,
               fixed: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
    """ζ label maps over `num_classes` labels, leaving the labels in `fixed` in place
    (special tokens); the others are permuted among themselves. Returns (maps, permuted)."""
    free = np.setdiff1d(np.arange(num_classes), np.asarray(fixed, dtype=np.int64))
    sub, permuted = zeta_permutations(num_clients, len(free), zeta, rng)
    maps = np.tile(np.arange(num_classes, dtype=np.int64), (num_clients, 1))
    maps[:, free] = free[sub]
    return maps, permuted


def assemble(
    name: str,
    ids: Sequence[str],
    train: Packed,
    test: Packed,
    train_index: Sequence[int],
    heldout_index: Sequence[int],
    num_classes: int,
    zeta: float,
    seed: int,
    fixed_labels: Sequence[int] = (),
    input_transform: Callable | None = None,
    ignore_index: int | None = None,
    info: dict | None = None,
    augment: Callable | None = None,
) -> FederatedData:
    """Training and held-out populations with ζ permutations applied.

    Each population gets exactly round((1-ζ)·clients) permuting clients (its
    own draw), and a client's train and test labels go through the same map.
    `info["permuted"]` and `info["label_maps"]` record who permutes how.
    """
    check(0.0 <= zeta <= 1.0, "zeta", zeta, "a number in [0, 1]")
    pops, permuted, maps_out = {}, {}, {}
    for salt, (pop, index) in enumerate((("train", train_index), ("heldout", heldout_index)), start=1):
        tr, te = train.take(index), test.take(index)
        maps, mask = label_maps(len(index), num_classes, zeta, np.random.default_rng([seed, 1, salt]), fixed_labels)
        if zeta < 1.0:
            tr, te = tr.relabel(maps), te.relabel(maps)
        pops[pop] = Population([ids[i] for i in index], tr.split(), te.split())
        permuted[pop] = torch.from_numpy(mask)
        maps_out[pop] = torch.from_numpy(maps)
    data = FederatedData(
        name=name,
        train=pops["train"],
        heldout=pops["heldout"],
        num_classes=num_classes,
        input_transform=input_transform,
        ignore_index=ignore_index,
        augment=augment,
        info={"zeta": zeta, "permuted": permuted, "label_maps": maps_out, **(info or {})},
    )
    check_data(data)  # labels in range, finite features, train/test paired, someone to train (pfl.data.validate)
    return data
