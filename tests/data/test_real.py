"""Loaders on the real files in ../shared/data (skipped with the reason where absent)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.shared_data import shared_path
from pfl.data import text
from pfl.data.leaf import load_femnist_leaf
from pfl.data.shakespeare import load_shakespeare


def test_tff_shakespeare_counts_and_split(tmp_path):
    root = shared_path("tff_shakespeare")
    data = load_shakespeare(root=str(root), cache_dir=str(tmp_path))
    assert len(data.train) + len(data.heldout) == 715
    assert (len(data.train), len(data.heldout)) == (500, 215)
    assert data.info["snippets"] == {"train": 16_068, "test": 2_356}
    assert data.train.client_ids == sorted(data.train.client_ids)
    assert data.train.client_ids[-1] < data.heldout.client_ids[0]  # the first 500 sorted ids train
    assert data.train.train.x.shape[1:] == (80,) and data.train.train.x.dtype == torch.uint8
    # the first snippet of the first role, decoded back from its ids
    first = data.train.train.x[0].long()
    assert first[0] == text.BOS
    chars = "".join(text.CHAR_VOCAB[i - 1] for i in first[1:].tolist() if 1 <= i <= len(text.CHAR_VOCAB))
    assert chars.startswith("Yonder comes my master, your brother.")
    # every client has test rows; targets are the inputs shifted by one
    assert bool((data.train.test.counts > 0).all()) and bool((data.heldout.test.counts > 0).all())
    assert torch.equal(data.train.train.x[0, 1:].long(), data.train.train.y[0, :-1])
    # second start: from the decoded cache, same arrays
    again = load_shakespeare(root=str(root), cache_dir=str(tmp_path))
    assert torch.equal(again.heldout.test.y, data.heldout.test.y)


@pytest.mark.slow  # decodes the shared LEAF sample
def test_leaf_femnist_pairs_users(tmp_path):
    root = shared_path("leaf_femnist_niid05")
    data = load_femnist_leaf(root=str(root), cache_dir=str(tmp_path), train_clients=80)
    # 105 users have train and test shards (79 test-only users are dropped); see PROVENANCE.txt
    assert (len(data.train), len(data.heldout)) == (80, 25)
    assert data.info["unpaired_users_dropped"] == 79
    assert int(data.train.train.counts.sum() + data.heldout.train.counts.sum()) == 14_708
    assert int(data.train.test.counts.sum() + data.heldout.test.counts.sum()) == 1_685
    assert data.num_classes == 62 and data.train.train.x.shape[1:] == (28, 28)
    x = data.transform(data.train.train.x[:50])
    assert float(x.min()) >= 0.0 and float(x.max()) == 1.0 and float((x == 1.0).float().mean()) > 0.5  # 1 = background
    assert int(data.train.train.y.max()) <= 61
