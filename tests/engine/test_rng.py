import torch

from pfl import rng


def test_keys_are_deterministic_and_distinct():
    assert torch.equal(rng.key(1, 2, 3), rng.key(1, 2, 3))
    assert not torch.equal(rng.key(1, 2, 3), rng.key(1, 2, 4))
    assert not torch.equal(rng.fold(rng.key(0), 1), rng.fold(rng.key(0), 2))


def test_uniform_and_normal_statistics():
    u = rng.uniform(rng.key(7), (200_000,))
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.var()) - 1 / 12) < 0.002
    z = rng.normal(rng.key(8), (200_000,))
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1.0) < 0.01
    # neighbouring counters are not correlated
    assert abs(float(torch.corrcoef(torch.stack([z[:-1], z[1:]]))[0, 1])) < 0.01


def test_permutation_puts_real_examples_first():
    p = rng.permutation(rng.key(3), 5, 9)
    assert sorted(p[:5].tolist()) == [0, 1, 2, 3, 4]
    assert p[5:].tolist() == [5, 6, 7, 8]


def test_draws_under_vmap_match_a_loop():
    keys = torch.stack([rng.key(s) for s in range(4)])
    batched = torch.func.vmap(lambda k: rng.normal(k, (3, 5)))(keys)
    looped = torch.stack([rng.normal(k, (3, 5)) for k in keys])
    assert torch.equal(batched, looped)
