"""How ranks split clients (pfl.execution.Shard): every client exactly once, balanced by cost,
and gathered back into client order."""

import torch
import torch.distributed as dist

from pfl.execution import Shard


def test_contiguous_blocks_without_weights():
    parts = Shard(0, 3).assignment(7)
    assert [p.tolist() for p in parts] == [[0, 1, 2], [3, 4, 5], [6]]


def test_weighted_split_covers_each_client_once_and_balances_the_cost():
    g = torch.Generator().manual_seed(0)
    for world in (2, 3, 4):
        for num in (1, 2, 5, 10, 64, 215):
            n = (torch.randn(num, generator=g) * 1.5 + 3).exp().round().long()  # Shakespeare-like skew
            parts = Shard(0, world).assignment(num, n)
            assert sorted(torch.cat(parts).tolist()) == list(range(num))
            assert all(p.tolist() == sorted(p.tolist()) for p in parts)
            loads = [float((n[p] + 1).sum()) for p in parts]
            # greedy, largest first: no rank exceeds another by more than the largest client
            assert max(loads) - min(loads) <= float(n.max()) + 1
            assert [p.tolist() for p in parts] == [p.tolist() for p in Shard(1, world).assignment(num, n)]


def test_weighted_split_beats_blocks_on_a_skewed_cohort():
    n = torch.tensor([1000, 900, 3, 2, 1, 1])
    blocks = [float(n[p].sum()) for p in Shard(0, 2).assignment(6)]
    dealt = [float(n[p].sum()) for p in Shard(0, 2).assignment(6, n)]
    assert max(blocks) == 1903 and max(dealt) <= 1004


def test_gather_puts_every_rank_s_rows_back_in_client_order(monkeypatch):
    num, world = 9, 2
    n = torch.tensor([5, 50, 1, 7, 30, 2, 2, 9, 40])
    rows = torch.arange(num) * 10  # client i's result: 10 i
    shares = [rows[Shard(r, world).part(num, weights=n)] for r in range(world)]
    calls = []

    def all_gather(out, t):  # both ranks' (padded) shares of the leaf, as gloo would deliver them
        leaf = len(calls) % 2  # the leaves in order: results, then their flags (sent as uint8)
        calls.append(t)
        for r, share in enumerate(shares):
            share = share if leaf == 0 else (share > 40).to(torch.uint8)
            pad = t.shape[0] - share.shape[0]
            out[r].copy_(torch.cat([share, share[:1].expand(pad)]) if pad else share)

    monkeypatch.setattr(dist, "all_gather", all_gather)
    for rank in range(world):
        got = Shard(rank, world).gather((shares[rank], shares[rank] > 40), num, n)
        assert got[0].tolist() == rows.tolist()
        assert got[1].dtype == torch.bool and got[1].tolist() == (rows > 40).tolist()
