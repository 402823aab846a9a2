"""Partitioning helpers: Dirichlet label skew and the ζ diversity knob.

- `dirichlet_label_skew`: split a pooled labelled data set over clients; each
  client's class proportions are a Dirichlet(α) draw (small α, strong skew).
- `zeta_permutations`: the second paper's diversity knob. A (1-ζ) fraction of
  clients (exactly round((1-ζ)·clients)) each gets its own random permutation
  of the class labels; the others keep the identity. ζ = 1 changes nothing.
  A client applies the same permutation to its train and test labels.
"""

from __future__ import annotations

import numpy as np


def dirichlet_label_skew(
    labels: np.ndarray, num_clients: int, alpha: float, rng: np.random.Generator, min_size: int = 1
) -> list[np.ndarray]:
    """Indices of `labels` for each client, class proportions ~ Dirichlet(alpha).

    Each class's examples are dealt to clients in proportion to the clients'
    Dirichlet weights for that class (per-client weights are drawn once, so a
    client's label histogram follows its draw). Redraws until every client has
    at least `min_size` examples.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if alpha <= 0:
        raise ValueError(f"Dirichlet alpha must be > 0, got {alpha}")
    for _ in range(100):
        props = rng.dirichlet(np.full(len(classes), alpha), size=num_clients)  # [clients, classes]
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for j, c in enumerate(classes):
            idx = rng.permutation(np.flatnonzero(labels == c))
            share = props[:, j] / props[:, j].sum()
            cuts = (np.cumsum(share)[:-1] * len(idx)).astype(int)
            for i, chunk in enumerate(np.split(idx, cuts)):
                parts[i].append(chunk)
        out = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(o) for o in out) >= min_size:
            return out
    raise ValueError(f"could not give every client {min_size} examples with alpha={alpha}; use fewer clients")


def zeta_permutations(num_clients: int, num_classes: int, zeta: float, rng: np.random.Generator) -> np.ndarray:
    """[clients, classes] label maps: identity for a ζ fraction, random otherwise.

    Exactly round((1 - ζ) · clients) clients, chosen at random, permute.
    Returns the maps and which clients permute as (maps, permuted_mask).
    """
    if not 0.0 <= zeta <= 1.0:
        raise ValueError(f"zeta must be in [0, 1], got {zeta}")
    maps = np.tile(np.arange(num_classes), (num_clients, 1))
    num_perm = int(round((1.0 - zeta) * num_clients))
    chosen = rng.choice(num_clients, size=num_perm, replace=False)
    for i in chosen:
        maps[i] = rng.permutation(num_classes)
    mask = np.zeros(num_clients, dtype=bool)
    mask[chosen] = True
    return maps, mask


def dirichlet_label_skew_paired(
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    num_clients: int,
    alpha: float,
    rng: np.random.Generator,
    min_train: int = 1,
    min_test: int = 1,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Dirichlet(alpha) label skew dealt to two pools with the same proportions.

    Client i receives the same share props[i, c] / Σ_j props[j, c] of class c's
    examples in the train pool and in the test pool, so its test labels follow
    its train label distribution (up to rounding). Redraws until every client
    has at least `min_train` / `min_test` examples.
    """
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    classes = np.union1d(np.unique(train_labels), np.unique(test_labels))
    if alpha <= 0:
        raise ValueError(f"Dirichlet alpha must be > 0, got {alpha}")
    for _ in range(100):
        props = rng.dirichlet(np.full(len(classes), alpha), size=num_clients)
        out = []
        for labels in (train_labels, test_labels):
            parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
            for j, c in enumerate(classes):
                idx = rng.permutation(np.flatnonzero(labels == c))
                share = props[:, j] / props[:, j].sum()
                cuts = np.rint(np.cumsum(share)[:-1] * len(idx)).astype(int)
                for i, chunk in enumerate(np.split(idx, cuts)):
                    parts[i].append(chunk)
            out.append([np.sort(np.concatenate(p)) for p in parts])
        if min(map(len, out[0])) >= min_train and min(map(len, out[1])) >= min_test:
            return out[0], out[1]
    raise ValueError(f"could not give every client {min_train} train / {min_test} test examples with alpha={alpha}; "
                     "use fewer clients")
