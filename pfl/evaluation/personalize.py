"""Personalization evaluation, shared by every algorithm.

For each client: the accuracy of the model it starts from on its test data
(initial accuracy, k = 0: `algorithm.personal_model`, the server's model unless
the client has per-client state of its own), then of the model after k = 1..K
epochs of the algorithm's `adapt` on the client's training data (the
personalization curve). Every point is scored by `algorithm.evaluate(model,
test, train)` (default: the model's predictions; kNN-Per adds a memory of the
client's training data). Training clients of algorithms with per-client state
(personal heads, personal models) are evaluated with their own state rows
(`state`); held-out clients have none (state None) and get what the
algorithm documents for a new client.
Clients are batched like training (vmap or loop, in chunks). Means are uniform
over clients (not weighted by data size), as in Jiang et al. 2019; clients
without test data are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pfl import rng
from pfl.algorithms.base import Algorithm
from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import Population
from pfl.task import Params


@dataclass
class PersonalizationResult:
    client_ids: list[str]
    num_train: Tensor  # [C]
    num_test: Tensor  # [C] counted test positions
    correct: Tensor  # [C, K+1] correct predictions after k = 0..K epochs
    local_accuracy: Tensor | None = None  # [C] accuracy of a model trained on the client alone (fairness reference)

    @property
    def accuracy(self) -> Tensor:
        """[C, K+1] per-client accuracy (NaN where a client has no test data)."""
        return self.correct.double() / self.num_test.double().unsqueeze(1)

    def mean_accuracy(self) -> Tensor:
        """[K+1] accuracy averaged uniformly over clients with test data."""
        acc = self.accuracy
        valid = self.num_test > 0
        return acc[valid].mean(0) if bool(valid.any()) else torch.full((acc.shape[1],), float("nan"))

    def records(self) -> list[dict]:
        """One row per client: id, examples, accuracy after each k."""
        acc = self.accuracy
        rows = []
        for i, cid in enumerate(self.client_ids):
            row = {"client_id": cid, "num_train": int(self.num_train[i]), "num_test": int(self.num_test[i])}
            row.update({f"acc_{k}": float(acc[i, k]) for k in range(acc.shape[1])})
            if self.local_accuracy is not None:
                row["acc_local"] = float(self.local_accuracy[i])
            rows.append(row)
        return rows


def personalize(
    algorithm: Algorithm,
    local: LocalTrainer,
    params: Params,
    population: Population,
    clients: Tensor,
    epochs: int,
    key: Tensor,
    backend,
    chunk_size: int | None = 64,
    progress=None,
    state: dict | None = None,
) -> PersonalizationResult:
    """Initial and personalized accuracy (k = 0..epochs) for `clients` of `population`.

    `params` is the server's state; the initial model is `algorithm.personal_model(params, state_i)`.
    `state` (optional): the clients' per-client state, one row per entry of `clients`
    (a dict of tensors with a leading client axis); None: no client has state.
    `backend` is a `pfl.execution.Backend`; `chunk_size` clients are gathered at a time;
    `progress(n)` (optional) is told after every n clients done.
    """

    def one(p, data, k, st, loop):
        train, test = data
        trainer = local.using(loop)
        initial, counted = algorithm.evaluate(trainer, algorithm.personal_model(p, st), test, train)
        correct = [initial]
        if epochs == 0:  # initial accuracy only: forward passes, no adaptation
            return torch.stack(correct), counted
        algorithm.adapt(trainer, p, train, k, epochs,
                        lambda e, pe: correct.append(algorithm.evaluate(trainer, pe, test, train)[0]), state=st)
        return torch.stack(correct), counted

    chunk = chunk_size or len(clients)
    correct, counts = [], []
    for start in range(0, len(clients), chunk):
        ids = clients[start:start + chunk]
        train = population.train.gather(ids)
        test = population.test.gather(ids)
        keys = torch.stack([rng.fold(key, int(i)) for i in ids]).to(train.x.device)
        rows = None if state is None else {k: v[start:start + chunk] for k, v in state.items()}
        c, n = backend.map(one, params, (train, test), keys, rows, progress=progress)
        correct.append(c)
        counts.append(n)
    return PersonalizationResult(
        [population.client_ids[int(i)] for i in clients],
        population.train.counts[clients.to(population.train.counts.device)].cpu(),
        torch.cat(counts).cpu(),
        torch.cat(correct).cpu(),
    )
