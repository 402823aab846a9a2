"""The default generated data set: a class-conditional Gaussian mixture with label skew (no download).

LEAF's Synthetic(α, β) (pfl.data.synthetic, `dataset=synthetic_leaf`) labels each client's inputs
with the argmax of the client's own random softmax model; its per-client biases make one class win
almost everywhere (86.7% of a held-out client's test labels are its majority class at α = β = 1),
so every method personalizes to the majority class and none can be told apart. This generator
controls the three things the papers vary instead:

    μ_c ~ N(0, sep²/d · I)                  shared class means (what the global model can learn)
    δ_kc ~ N(0, shift²/d · I)               client k's own displacement of class c (concept shift:
                                            what only personalization can learn)
    v_k ~ N(0, offset²/d · I)               client k's input offset, common to its classes
    p_k ~ Dirichlet(label_skew · 1)         client k's class proportions (the second paper's
                                            Dirichlet label skew; 0.5 there)
    y ~ p_k,  x = μ_y + δ_ky + v_k + ε,  ε ~ N(0, I)

The /d scaling keeps the distances between class means independent of `dim`. Client sizes follow
LEAF's capped lognormal; each client's examples split into train and test (80/20, the same class
proportions). The first `train_clients` clients train, the rest are held out; ζ < 1 permutes the
labels of exactly round((1-ζ)·clients) clients per population (pfl.data.partition), recorded in
`info["permuted"]` / `info["label_maps"]` as for every loader.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np

from pfl.config.errors import is_int
from pfl.data.federated import FederatedData
from pfl.data.synthetic import generated_data, label_maps
from pfl.config.settings import checked, integer, number, relation


@checked("dataset")
def load_synthetic_mixture(
    sep: Annotated[float, number(ge=0)] = 2.0,
    shift: Annotated[float, number(ge=0)] = 3.0,
    offset: Annotated[float, number(ge=0)] = 1.0,
    label_skew: Annotated[float, number(gt=0)] = 0.5,
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
    g = np.random.default_rng([seed, 7])
    sizes = np.clip(g.lognormal(4, 2, num_clients).astype(int) + min_examples, min_examples, max_examples)
    means = g.normal(0, sep / np.sqrt(dim), (num_classes, dim))
    maps, permuted = label_maps(seed, train_clients, num_clients, num_classes, zeta)
    xs, ys = [], []
    for k in range(num_clients):
        centres = means + g.normal(0, shift / np.sqrt(dim), (num_classes, dim)) \
            + g.normal(0, offset / np.sqrt(dim), dim)
        y = g.choice(num_classes, size=sizes[k], p=g.dirichlet(np.full(num_classes, label_skew)))
        x = (centres[y] + g.normal(0, 1, (sizes[k], dim))).astype(np.float32)
        xs.append(x), ys.append(maps[k][y])
    return generated_data(xs, ys, test_fraction, train_clients, num_classes, maps, permuted,
                          {"sep": sep, "shift": shift, "offset": offset, "label_skew": label_skew, "dim": dim,
                           "zeta": zeta})
