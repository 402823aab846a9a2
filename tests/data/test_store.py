import numpy as np
import torch

from pfl.data.federated import Population
from pfl.data.partition import dirichlet_label_skew, zeta_permutations


def _pop():
    xs = [np.full((n, 2), i, np.float32) for i, n in enumerate([3, 1, 4])]
    ys = [np.arange(n) for n in [3, 1, 4]]
    return Population.from_clients(["a", "b", "c"], xs, ys, xs, ys)


def test_gather_pads_and_counts():
    pop = _pop()
    d = pop.train.gather(torch.tensor([2, 1]))
    assert d.x.shape == (2, 4, 2)
    assert d.n.tolist() == [4, 1]
    assert torch.all(d.x[0] == 2) and torch.all(d.x[1, :1] == 1)
    assert d.y[0].tolist() == [0, 1, 2, 3]


def test_subset_keeps_examples():
    sub = _pop().subset([2, 0])
    assert sub.client_ids == ["c", "a"]
    assert sub.train.counts.tolist() == [4, 3]
    assert torch.all(sub.train.gather(torch.tensor([1])).x[0, :3] == 0)


def test_dirichlet_covers_every_example_once():
    labels = np.repeat(np.arange(10), 50)
    parts = dirichlet_label_skew(labels, 8, 0.5, np.random.default_rng(0))
    allidx = np.concatenate(parts)
    assert len(allidx) == len(labels) and len(np.unique(allidx)) == len(labels)


def test_zeta_permutes_exact_fraction():
    maps, mask = zeta_permutations(40, 10, 0.25, np.random.default_rng(0))
    assert mask.sum() == 30
    ident = (maps == np.arange(10)).all(1)
    assert ident[~mask].all()
    assert all(sorted(m) == list(range(10)) for m in maps)
    maps1, mask1 = zeta_permutations(40, 10, 1.0, np.random.default_rng(0))
    assert mask1.sum() == 0 and (maps1 == np.arange(10)).all()
