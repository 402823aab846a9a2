"""Small cohorts and a one-call round, shared by the identity tests."""

import torch

from pfl import rng
from pfl.data.federated import Population
from pfl.engine.backends import run_clients


def cohort(sizes, dim=5, classes=3, seed=0):
    """Padded cohort data of random clients with `sizes` examples each."""
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(n, dim, generator=g) for n in sizes]
    ys = [torch.randint(0, classes, (n,), generator=g) for n in sizes]
    pop = Population.from_clients([str(i) for i in range(len(sizes))], xs, ys, xs, ys)
    return pop.train.gather(torch.arange(len(sizes)))


def run_round(alg, local, params, data, backend="sequential", key_seed=0):
    """Every client's ClientUpdate (stacked) for one round of `alg`."""
    keys = torch.stack([rng.key(key_seed, i) for i in range(len(data.n))])
    fn = lambda p, d, k, m, s: alg.client_update(local, p, d, k, m, s)  # noqa: E731
    return run_clients(fn, params, data, keys, alg.num_steps(local, data.n), backend)


def aggregate(out):
    """The server's weighted mean of the clients' Δ."""
    w = out.weight / out.weight.sum()
    return {k: torch.einsum("c,c...->...", w, v) for k, v in out.delta.items()}
