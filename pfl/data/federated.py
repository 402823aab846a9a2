"""Federated data held once, compactly, on the compute device.

A `Population` stores every client's examples back to back in one tensor per
split (client i's training examples are `train.x[offsets[i]:offsets[i+1]]`), in
the data set's compact dtype (uint8 pixels, int64 tokens, float features).
Each round the engine gathers the sampled cohort into padded tensors
`[clients, max_examples, ...]` plus a count per client: one indexing operation,
no Python loop over examples and no re-reading of files.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor


class ClientData(NamedTuple):
    """One client's padded examples (or a cohort's, with a leading client axis).

    `n` counts the real examples; rows at positions >= n are padding.
    `aug` (optional, bool per client) switches on the data set's training-time
    augmentation for this client (pfl.data.augment); None: no augmentation.
    """

    x: Tensor
    y: Tensor
    n: Tensor
    aug: Tensor | None = None


@dataclass
class Split:
    """All clients' examples of one split (train or test), concatenated."""

    x: Tensor  # [total, ...]
    y: Tensor  # [total, ...]
    counts: Tensor  # [clients] int64
    aug: Tensor | None = None  # [clients] bool: augment this client's examples (None: nobody)

    @property
    def offsets(self) -> Tensor:
        return torch.cumsum(self.counts, 0) - self.counts

    def to(self, device) -> "Split":
        aug = None if self.aug is None else self.aug.to(device)
        return Split(self.x.to(device), self.y.to(device), self.counts.to(device), aug)

    def gather(self, clients: Tensor, pad_to: int | None = None) -> ClientData:
        """Padded examples of `clients` (a 1-D index tensor): x [C, N, ...]."""
        clients = clients.to(self.counts.device)
        counts = self.counts[clients]
        width = int(counts.max()) if pad_to is None else pad_to
        width = max(width, 1)
        pos = torch.arange(width, device=counts.device)
        idx = self.offsets[clients].unsqueeze(1) + pos.unsqueeze(0)
        valid = pos.unsqueeze(0) < counts.unsqueeze(1)
        # padding rows repeat the client's first example (or example 0 if empty);
        # they are masked everywhere, this only keeps indices in range.
        idx = torch.where(valid, idx, self.offsets[clients].unsqueeze(1))
        idx = idx.clamp(max=max(self.x.shape[0] - 1, 0))
        aug = None if self.aug is None else self.aug.to(counts.device)[clients]
        return ClientData(self.x[idx], self.y[idx], counts, aug)


@dataclass
class Population:
    """A set of clients, each with its own train and test examples."""

    client_ids: list[str]
    train: Split
    test: Split

    def __len__(self) -> int:
        return len(self.client_ids)

    def to(self, device) -> "Population":
        return replace(self, train=self.train.to(device), test=self.test.to(device))

    def subset(self, index: Sequence[int]) -> "Population":
        """The clients at `index`, in that order (copies their examples)."""
        clients = [_client_arrays(self, i) for i in index]
        return Population.from_clients(
            [self.client_ids[i] for i in index],
            [c[0] for c in clients],
            [c[1] for c in clients],
            [c[2] for c in clients],
            [c[3] for c in clients],
        )

    @staticmethod
    def from_clients(
        ids: Sequence[str],
        train_x: Sequence,
        train_y: Sequence,
        test_x: Sequence,
        test_y: Sequence,
    ) -> "Population":
        """Pack per-client arrays (numpy or torch, any dtype) into one Population."""
        if not (len(ids) == len(train_x) == len(train_y) == len(test_x) == len(test_y)):
            raise ValueError("from_clients: ids and the four array lists must have equal length")
        return Population(list(ids), _pack(train_x, train_y), _pack(test_x, test_y))

    def map_clients(
        self, fn: Callable[[int, Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor, Tensor]]
    ) -> "Population":
        """Apply fn(i, train_x, train_y, test_x, test_y) to every client."""
        out = [fn(i, *_client_arrays(self, i)) for i in range(len(self))]
        return Population.from_clients(self.client_ids, *zip(*out)) if out else self


def _as_tensor(a) -> Tensor:
    return a if isinstance(a, Tensor) else torch.from_numpy(np.ascontiguousarray(a))


def _pack(xs: Sequence, ys: Sequence) -> Split:
    xs = [_as_tensor(x) for x in xs]
    ys = [_as_tensor(y) for y in ys]
    counts = torch.tensor([len(x) for x in xs], dtype=torch.int64)
    for x, y in zip(xs, ys):
        if len(x) != len(y):
            raise ValueError(f"a client has {len(x)} inputs but {len(y)} labels")
    return Split(torch.cat(xs), torch.cat(ys), counts)


def _client_arrays(pop: Population, i: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    out = []
    for split in (pop.train, pop.test):
        start = int(split.offsets[i])
        end = start + int(split.counts[i])
        out += [split.x[start:end], split.y[start:end]]
    return tuple(out)  # type: ignore[return-value]


@dataclass
class FederatedData:
    """A federated data set: the training population and a held-out one.

    Training never touches `heldout`; personalization is evaluated on it (and on
    a sample of training clients, for the seen-vs-unseen comparison).

    `input_transform` maps stored inputs (compact dtype) to model inputs, e.g.
    uint8 pixels to floats; it runs on the device on gathered batches.
    `ignore_index` marks label positions that never count (sequence padding).
    `augment(x, key) -> x` is a training-time augmentation of stored inputs,
    applied during local training to the clients whose split has `aug` set
    (the ζ-permuted clients, pfl.data.augment.flag_permuted_clients).
    """

    name: str
    train: Population
    heldout: Population
    num_classes: int
    input_transform: Callable[[Tensor], Tensor] | None = None
    ignore_index: int | None = None
    info: dict = field(default_factory=dict)
    augment: Callable[[Tensor, Tensor], Tensor] | None = None

    def to(self, device) -> "FederatedData":
        return replace(self, train=self.train.to(device), heldout=self.heldout.to(device))

    def transform(self, x: Tensor) -> Tensor:
        return self.input_transform(x) if self.input_transform is not None else x
