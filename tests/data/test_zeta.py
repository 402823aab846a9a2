"""ζ diversity: exact permuted fractions, Dirichlet label skew, shared train/test maps, seeding."""

import numpy as np
import pytest
import torch

from pfl.data.partition import dirichlet_label_skew, zeta_permutations
from pfl.data.synthetic import load_synthetic


@pytest.mark.parametrize("zeta", [0.0, 0.1, 0.4, 0.5, 0.9, 1.0])
def test_permuted_fraction_is_exact(zeta):
    maps, mask = zeta_permutations(37, 10, zeta, np.random.default_rng(3))
    assert mask.sum() == round((1 - zeta) * 37)
    ident = np.arange(10)
    for m, permuted in zip(maps, mask):
        assert sorted(m) == list(ident)  # a permutation
        if not permuted:
            assert (m == ident).all()
    # a permuting client almost surely moves some label (10! maps); check the set as a whole
    if mask.any():
        assert any((m != ident).any() for m in maps[mask])


def test_synthetic_permutes_exactly_per_population():
    data = load_synthetic(num_clients=40, train_clients=30, max_examples=60, zeta=0.3, seed=1)
    perm = data.info["permuted"]
    assert int(perm["train"].sum()) == round(0.7 * 30)
    assert int(perm["heldout"].sum()) == round(0.7 * 10)
    assert perm["train"].dtype == torch.bool and perm["train"].shape == (30,)


def test_dirichlet_histograms_follow_the_draw():
    """Each class is dealt in proportion to the clients' Dirichlet(0.5) weights
    (the draw is reproduced from the same seed): counts match to rounding."""
    rng = np.random.default_rng(7)
    labels = np.repeat(np.arange(10), 1000)
    parts = dirichlet_label_skew(labels, 20, 0.5, np.random.default_rng(7))
    props = rng.dirichlet(np.full(10, 0.5), size=20)  # the first (accepted) draw
    share = props / props.sum(0, keepdims=True)
    hist = np.stack([np.bincount(labels[p], minlength=10) for p in parts])
    assert np.abs(hist - share * 1000).max() <= 1.0 + 1e-9
    assert sorted(np.concatenate(parts)) == list(range(len(labels)))  # a partition
    # the skew is strong: a typical client holds most of its data in few classes
    top2 = np.sort(hist / hist.sum(1, keepdims=True), 1)[:, -2:].sum(1)
    assert np.median(top2) > 0.5


def test_test_labels_use_the_train_permutation():
    """Same seed with and without ζ: inputs are equal and every client's train
    and test labels go through its one recorded map."""
    plain = load_synthetic(num_clients=30, train_clients=20, max_examples=60, zeta=1.0, seed=2)
    mixed = load_synthetic(num_clients=30, train_clients=20, max_examples=60, zeta=0.2, seed=2)
    for pop in ("train", "heldout"):
        a, b = getattr(plain, pop), getattr(mixed, pop)
        maps = mixed.info["label_maps"][pop]
        for split in ("train", "test"):
            sa, sb = getattr(a, split), getattr(b, split)
            assert torch.equal(sa.x, sb.x)
            owner = torch.repeat_interleave(torch.arange(len(a)), sa.counts)
            assert torch.equal(sb.y, maps[owner, sa.y])
        moved = (maps != torch.arange(10)).any(1)
        assert torch.equal(moved, mixed.info["permuted"][pop])


def test_determinism_per_seed():
    a = load_synthetic(num_clients=30, train_clients=20, max_examples=60, zeta=0.5, seed=4)
    b = load_synthetic(num_clients=30, train_clients=20, max_examples=60, zeta=0.5, seed=4)
    c = load_synthetic(num_clients=30, train_clients=20, max_examples=60, zeta=0.5, seed=5)
    assert torch.equal(a.train.train.y, b.train.train.y) and torch.equal(a.heldout.test.y, b.heldout.test.y)
    assert torch.equal(a.info["permuted"]["train"], b.info["permuted"]["train"])
    assert not torch.equal(a.info["permuted"]["train"], c.info["permuted"]["train"])
