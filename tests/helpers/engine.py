"""Small cohorts and a one-call round, shared by the identity tests."""

import torch

from pfl import rng
from pfl.data.federated import Population
from pfl.aggregate import weighted_mean
from pfl.engine.round import client_updates
from pfl.execution import Backend


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
    return client_updates(alg, local, Backend(backend), params, data, keys)


def aggregate(out):
    """The server's weighted mean of the clients' Δ."""
    return weighted_mean(out.delta, out.weight)
