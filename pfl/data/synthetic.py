"""The LEAF / FedProx Synthetic(α, β) benchmark, generated (no download).

Li et al. 2020 (FedProx), Caldas et al. 2018 (LEAF): client k draws its own
softmax model and input distribution,

    u_k ~ N(0, α),  W_k ~ N(u_k, 1) [d x c],  b_k ~ N(u_k, 1) [c]
    B_k ~ N(0, β),  v_k ~ N(B_k, 1) [d],      x ~ N(v_k, Σ), Σ_jj = j^-1.2
    y = argmax(W_k^T x + b_k)

so α controls how much the clients' models differ and β how much their inputs
differ. Client sizes follow a power law (lognormal, as in LEAF), capped.
Each client's examples are split into train and test (80/20). The first
`train_clients` clients train, the rest are held out. With ζ < 1 exactly
round((1-ζ)·clients) clients of each population (training, held-out) permute
their labels, train and test through the same map (pfl.data.partition);
`info["permuted"]` and `info["label_maps"]` record who and how. Feature
vectors have no natural augmentation, so permuted clients are not augmented.
"""

from __future__ import annotations

import numpy as np
import torch

from typing import Annotated

from pfl.config.errors import is_int
from pfl.data.federated import FederatedData, Population
from pfl.data.partition import zeta_permutations
from pfl.data.validate import check_data
from pfl.config.settings import checked, integer, number, relation


@checked("dataset")
def load_synthetic(
    alpha: Annotated[float, number(ge=0)] = 1.0,
    beta: Annotated[float, number(ge=0)] = 1.0,
    num_clients: Annotated[int, integer(ge=2)] = 150,
    train_clients: Annotated[int, relation(lambda v, s: is_int(v) and 1 <= v < s["num_clients"],
                                           "an integer in [1, dataset.num_clients - 1]")] = 100,
    dim: Annotated[int, integer(ge=1)] = 60,
    num_classes: Annotated[int, integer(ge=2)] = 10,
    min_examples: Annotated[int, integer(ge=2)] = 50,
    max_examples: Annotated[int, relation(lambda v, s: is_int(v) and v >= s["min_examples"],
                                          "an integer >= dataset.min_examples")] = 500,
    test_fraction: Annotated[float, number(gt=0, lt=1)] = 0.2,
    zeta: float = 1.0,
    seed: int = 0,
) -> FederatedData:
    g = np.random.default_rng(seed)
    sizes = np.clip(g.lognormal(4, 2, num_clients).astype(int) + min_examples, min_examples, max_examples)
    cov = np.arange(1, dim + 1) ** -1.2
    maps, permuted = label_maps(seed, train_clients, num_clients, num_classes, zeta)
    xs, ys = [], []
    for k in range(num_clients):
        u = g.normal(0, np.sqrt(alpha))
        w = g.normal(u, 1, (dim, num_classes))
        b = g.normal(u, 1, num_classes)
        v = g.normal(g.normal(0, np.sqrt(beta)), 1, dim)
        x = g.normal(v, np.sqrt(cov), (sizes[k], dim)).astype(np.float32)
        xs.append(x), ys.append(maps[k][np.argmax(x @ w + b, axis=1)])
    return generated_data(xs, ys, test_fraction, train_clients, num_classes, maps, permuted,
                          {"alpha": alpha, "beta": beta, "dim": dim, "zeta": zeta})


def label_maps(seed: int, train_clients: int, num_clients: int, num_classes: int, zeta: float):
    """ζ's label permutations: one exact draw per population (like the real-data loaders), train then held out.
    Returns (label map per client [N, classes], permuted flags per population)."""
    maps, permuted = [], []
    for salt, count in enumerate((train_clients, num_clients - train_clients), start=1):
        m, p = zeta_permutations(count, num_classes, zeta, np.random.default_rng([seed, 1, salt]))
        maps.append(m), permuted.append(p)
    return np.concatenate(maps), permuted


def generated_data(xs, ys, test_fraction, train_clients, num_classes, maps, permuted, info,
                   name: str = "synthetic") -> FederatedData:
    """A generated data set `name` from each client's (x, y): the first `test_fraction` of a client's examples
    are its test set, clients [0, train_clients) train and the rest are held out; `maps` and `permuted` are
    `label_maps`'s; `info` must hold `dim` (the model's `in_features`)."""
    tr_x, tr_y, te_x, te_y = [], [], [], []
    for x, y in zip(xs, ys):
        n_test = max(1, int(round(test_fraction * len(x))))
        tr_x.append(x[n_test:]), tr_y.append(y[n_test:]), te_x.append(x[:n_test]), te_y.append(y[:n_test])
    ids = [f"{name}_{k:04d}" for k in range(len(xs))]
    y64 = lambda ys: [torch.from_numpy(a.astype(np.int64)) for a in ys]  # noqa: E731
    pop = Population.from_clients(ids, tr_x, y64(tr_y), te_x, y64(te_y))
    data = FederatedData(
        name=name,
        train=pop.subset(range(train_clients)),
        heldout=pop.subset(range(train_clients, len(xs))),
        num_classes=num_classes,
        info={**info, "model_kwargs": {"in_features": info["dim"]},
              "permuted": {"train": torch.from_numpy(permuted[0]), "heldout": torch.from_numpy(permuted[1])},
              "label_maps": {"train": torch.from_numpy(maps[:train_clients]),
                             "heldout": torch.from_numpy(maps[train_clients:])}},
    )
    check_data(data)
    return data
