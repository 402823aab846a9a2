"""The default generated data set (pfl.data.synthetic_mixture): sizes, label skew, shared structure, ζ."""

import numpy as np
import pytest
import torch

from pfl.data.synthetic_mixture import load_synthetic_mixture


def _majority(pop):
    c, o = pop.test.counts, torch.cumsum(pop.test.counts, 0) - pop.test.counts
    return float(np.mean([torch.bincount(pop.test.y[o[i]:o[i] + c[i]]).max().item() / c[i].item() for i in range(len(c))]))


def test_populations_sizes_and_split():
    d = load_synthetic_mixture(num_clients=30, train_clients=20, min_examples=20, max_examples=60, dim=8, seed=3)
    assert len(d.train.client_ids) == 20 and len(d.heldout.client_ids) == 10 and d.num_classes == 10
    n = d.train.train.counts + d.train.test.counts
    assert int(n.min()) >= 20 and int(n.max()) <= 60
    assert torch.equal(d.train.test.counts, torch.round(n * 0.2).clamp(min=1).long())
    assert d.train.train.x.shape[1] == 8 and d.info["model_kwargs"] == {"in_features": 8}


def test_label_skew_sets_how_much_one_class_dominates():
    kw = dict(num_clients=60, train_clients=40, min_examples=200, max_examples=200, dim=8, seed=0)
    skewed, flat = load_synthetic_mixture(label_skew=0.1, **kw), load_synthetic_mixture(label_skew=100.0, **kw)
    assert _majority(skewed.heldout) > 0.6 > 0.25 > _majority(flat.heldout)


def test_shared_means_make_clients_agree_and_shift_makes_them_differ():
    """With shift = offset = 0 every client draws from the same class-conditional distributions: the class
    means estimated from two clients agree up to sampling noise; a large shift moves them apart."""
    def gap(shift):
        d = load_synthetic_mixture(shift=shift, offset=0.0, sep=3.0, label_skew=100.0, num_clients=3, train_clients=2,
                                   min_examples=2000, max_examples=2000, dim=4, seed=1)
        a, b = d.train.subset([0]).train, d.train.subset([1]).train
        return max(float((a.x[a.y == c].mean(0) - b.x[b.y == c].mean(0)).norm()) for c in range(10))
    assert gap(0.0) < 0.5 < 2.0 < gap(6.0)


def test_zeta_permutes_exactly_per_population():
    d = load_synthetic_mixture(num_clients=40, train_clients=30, max_examples=60, zeta=0.3, seed=2)
    assert int(d.info["permuted"]["train"].sum()) == 21 and int(d.info["permuted"]["heldout"].sum()) == 7
    same = load_synthetic_mixture(num_clients=40, train_clients=30, max_examples=60, zeta=1.0, seed=2)
    assert torch.equal(same.train.train.x, d.train.train.x)  # ζ relabels, the inputs stay
    maps = d.info["label_maps"]["train"]
    for i in range(30):
        assert torch.equal(d.train.subset([i]).train.y, maps[i][same.train.subset([i]).train.y])


def test_bad_setting_is_one_line():
    with pytest.raises(Exception, match="label_skew"):
        load_synthetic_mixture(label_skew=0)
