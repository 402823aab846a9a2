"""The benchmark's workloads: sizes, data and how each arm runs them.

Data are synthetic tensors of the real workloads' shapes (the timing of a
round does not depend on the pixel values), generated from a seed by
`make_tensors`, so the pfl engine and the plain PyTorch reference train on the
same tensors and the same cohorts (`cohorts`, the engine's own formula).

- peers:      the issue's peer comparison: FedAvg, TFF's EMNIST CNN without
              dropout, 20 of 100 clients x 200 examples (28x28, 62 classes),
              batch 20, E=1, client SGD lr 0.05, server SGD lr 1.
- default:    the default run's round: Synthetic(1, 1) (150 clients, 100 train),
              MLP 60-64-10, 10 clients per round, FedAvg E=1, lr 0.02.
- lstm:       TFF's char-LSTM (embedding 8, LSTM 256 x 2) on Shakespeare-shaped
              rows (80 tokens, 90 symbols), 10 of 50 clients x 40 rows.
- eval:       personalization evaluation: peers-shaped held-out clients, each
              trained `epochs` epochs and tested after each; one "round" is one
              whole evaluation.
- population: the default case with a 10,000-client population, to show that
              the per-round memory does not grow with the population.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # image | features | text
    clients: int  # training population
    examples: int  # per client (train split)
    cohort: int  # clients per round
    lr: float
    batch: int = 20
    epochs: int = 1  # FedAvg E; for `eval`: personalization epochs
    heldout: int = 2  # held-out clients (evaluated once at the end of an engine run; `eval`: the evaluated ones)
    shape: tuple = (28, 28)
    classes: int = 62
    test: int = 10  # test examples per client

    def as_dict(self) -> dict:
        return asdict(self)


CASES = {
    "peers": Case("peers", "image", 100, 200, 20, 0.05),
    "default": Case("default", "features", 100, 0, 10, 0.02, heldout=50, shape=(60,), classes=10),
    "lstm": Case("lstm", "text", 50, 40, 10, 0.5, heldout=2, shape=(80,), classes=90, test=4),
    "eval": Case("eval", "image", 4, 200, 2, 0.05, epochs=5, heldout=50),
    "population": Case("population", "features", 9950, 0, 10, 0.02, heldout=50, shape=(60,), classes=10),
}


def sized(case: Case, clients: int | None = None, examples: int | None = None, cohort: int | None = None,
          heldout: int | None = None) -> Case:
    """The case with some sizes replaced (the test's tiny runs)."""
    changes = {k: v for k, v in (("clients", clients), ("examples", examples), ("cohort", cohort),
                                  ("heldout", heldout)) if v is not None}
    return replace(case, **changes)


def make_tensors(case: Case, seed: int = 0):
    """Per-client (train_x, train_y, test_x, test_y) lists for the training and held-out clients."""
    if case.kind == "features":  # the default run's own generator (Synthetic(1, 1))
        from pfl.data.synthetic import load_synthetic

        data = load_synthetic(num_clients=case.clients + case.heldout, train_clients=case.clients, seed=seed)
        return _lists(data.train), _lists(data.heldout)
    g = torch.Generator().manual_seed(seed)
    out = []
    for count in (case.clients, case.heldout):
        cols = [[], [], [], []]
        for _ in range(count):
            for j, n in enumerate((case.examples, case.test)):
                if case.kind == "image":
                    x = torch.rand(n, *case.shape, generator=g)
                    y = torch.randint(0, case.classes, (n,), generator=g)
                else:  # next-token rows: y is x shifted by one
                    seq = torch.randint(1, case.classes, (n, case.shape[0] + 1), generator=g)
                    x, y = seq[:, :-1], seq[:, 1:]
                cols[2 * j].append(x), cols[2 * j + 1].append(y)
        out.append(tuple(cols))
    return out[0], out[1]


def _lists(pop):
    from pfl.data.federated import _client_arrays

    rows = [_client_arrays(pop, i) for i in range(len(pop))]
    return tuple([r[k] for r in rows] for k in range(4))


def bench_data(case: dict, seed: int = 0, name: str = "bench"):
    """The case's tensors as a pfl FederatedData (the engine arm's `dataset._target_`)."""
    from pfl.data.federated import FederatedData, Population

    c = Case(**{**case, "shape": tuple(case["shape"])})
    if c.kind == "features":  # the default run's data set itself
        from pfl.data.synthetic import load_synthetic

        return load_synthetic(num_clients=c.clients + c.heldout, train_clients=c.clients, seed=seed)
    train, held = make_tensors(c, seed)
    pops = [Population.from_clients([f"{tag}{i}" for i in range(len(p[0]))], *p) for tag, p in (("t", train), ("h", held))]
    info = {"model_kwargs": {"vocab_size": c.classes}} if c.kind == "text" else {}
    return FederatedData(name=name, train=pops[0], heldout=pops[1], num_classes=c.classes, info=info)


def cohorts(seed: int, rounds: int, population: int, per_round: int) -> list[list[int]]:
    """The clients of rounds 0..rounds-1, exactly as the engine samples them (FederatedModule.cohort)."""
    from pfl import rng

    out = []
    for r in range(rounds):
        g = torch.Generator().manual_seed(int(rng.key(seed, r, 0xC0407)))
        out.append(torch.randperm(population, generator=g)[:per_round].sort().values.tolist())
    return out
