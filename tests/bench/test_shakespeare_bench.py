"""pfl.bench.shakespeare: its FLOP arithmetic is what torch counts, its sample keeps the size
distribution, and one tiny invocation runs every arm and prints the table."""

import torch
from torch.utils.flop_counter import FlopCounterMode

from pfl.bench import shakespeare as sk
from pfl.models.lstm import CharLSTM


def test_row_flops_equal_the_counted_forward_of_the_reference_model():
    model = CharLSTM(sk.VOCAB, vocab_size=sk.VOCAB, fused=False)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randint(0, sk.VOCAB, (1, sk.SEQ)))
    assert counter.get_total_flops() == sk.row_flops()
    assert sk.eval_flops(10, 2) == (5 * 3 * 10 + 6 * 2) * sk.row_flops()


def test_sample_is_evenly_spaced_in_size_order():
    counts = torch.tensor([50, 1, 40, 2, 30, 3, 20, 4])  # sorted: 1 2 3 4 20 30 40 50
    ids = sk.sample_roles(counts, 4)  # quantiles 1/8, 3/8, 5/8, 7/8 -> sorted positions 1, 3, 5, 7
    assert sorted(int(counts[i]) for i in ids) == [2, 4, 30, 50]
    # the engine's split over 2 ranks (pfl.execution.Shard, +1 per client): sizes 4+1 and 3+2
    assert sk._split([10, 11, 12, 13], [4, 1, 3, 2], 2, 0) == [10, 11]
    assert sk._split([10, 11, 12, 13], [4, 1, 3, 2], 2, 1) == [12, 13]
