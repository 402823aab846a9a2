"""One communication round, as a plain function of the server and the cohort.

    sent    = algorithm.broadcast(θ, key, s)    (+ algorithm.broadcast_each(θ, ids): one row per client)
    updates = backend.map(algorithm.client_update, sent, cohort)   # vmap or loop
    Δ       = algorithm.aggregate(updates, s)                      # default: weighted mean
    s       = algorithm.server_update(θ, Δ, optimizer, s, updates) # default: .grad = Δ, step

`run_round` is shared by the LightningModule (which adds scheduling, logging
and checkpoints), the engine benchmark and the tests. It names no algorithm:
everything algorithm-specific is a hook of `pfl.algorithms.base.Algorithm`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor

from pfl import aggregate as agg
from pfl import rng
from pfl.algorithms.base import Algorithm, ClientUpdate
from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import ClientData
from pfl.execution import Backend, counting_flops


@dataclass
class Server:
    """What the server holds: parameters (updated in place), its optimizer and
    the algorithm's server state."""

    params: dict[str, Tensor]  # name -> torch Parameter
    optimizer: object
    state: dict = field(default_factory=dict)


class RoundResult(NamedTuple):
    updates: ClientUpdate  # the cohort's stacked updates
    delta: dict[str, Tensor]  # the aggregate the server applied
    metrics: dict[str, float]  # client metrics averaged over the cohort
    server_metrics: dict[str, float]  # the algorithm's server-side scalars after the update
    bytes_down: int  # all clients together
    bytes_up: int
    client_state: dict | None  # the cohort's new per-client state (stacked), if any
    flops: int | None  # FLOPs of the client computation (when counted)


def cohort_keys(seed: int, r: int, ids: Tensor) -> Tensor:
    """One counter-based key per client of round r."""
    return torch.stack([rng.key(seed, r, int(i)) for i in ids])


def client_updates(algorithm: Algorithm, local: LocalTrainer, backend: Backend, sent, data: ClientData,
                   keys: Tensor, client_state: dict | None = None, each: dict | None = None) -> ClientUpdate:
    """Every client's `client_update` (stacked), each on the backend's step loop. `each`: the
    per-client rows of `broadcast_each` (None: every client receives `sent` alone)."""
    return backend.map(_client_fn(algorithm, local, each), sent, data, keys, per_client_rows(client_state, each))


def per_client_rows(client_state: dict | None, each: dict | None):
    """What the backend maps over the clients: the state rows, joined by the per-client broadcast rows."""
    if each is None:
        return client_state
    return {"sent": each, **({} if client_state is None else {"state": client_state})}


def with_own_rows(shared, row) -> tuple:
    """(what the client receives, its state) from the shared broadcast and its row of per_client_rows."""
    return {**shared, **row["sent"]}, row.get("state")


def _client_fn(algorithm: Algorithm, local: LocalTrainer, each: dict | None = None):
    def client(shared, d, k, st, loop):
        if each is not None:
            shared, st = with_own_rows(shared, st)
        return algorithm.client_update(local.using(loop), shared, d, k, st)

    return client


def first_message(sent, each: dict | None):
    """What one client (the first) received: the shared broadcast and its own row (for bytes)."""
    return sent if each is None else {**sent, **{k: v[0] for k, v in each.items()}}


def reduces_by_sum(algorithm: Algorithm) -> bool:
    """True when the algorithm declares its Δ the weighted mean of the updates (`mean_of_updates`,
    pfl.algorithms.base). Then Δ is summed as it is computed instead of stacking every client's Δ
    (C models) first: the sequential backend folds each client into one running sum, and ranks
    all-reduce their partial sums (one model) instead of all-gathering every Δ. The same Δ up to
    the order of the floating-point sum."""
    return bool(algorithm.mean_of_updates)


def _summed_updates(algorithm: Algorithm, local: LocalTrainer, backend: Backend, sent, data: ClientData,
                    keys: Tensor, client_state: dict | None = None,
                    each: dict | None = None) -> tuple[ClientUpdate, dict]:
    """(updates, Δ): Δ the cohort's weighted mean, summed over this rank's clients (as they are
    computed, in the sequential backend) and then over the ranks. In `updates`, weight, metrics and
    state have every client's row; delta and extra only this rank's (sequential: the first client's),
    which is what bytes_exchanged reads (one client's share)."""
    shard, fn = backend.shard, _client_fn(algorithm, local, each)
    running, first = {}, {}
    if backend.kind == "sequential":
        inner = fn

        def fn(shared, d, k, st, loop):  # noqa: F811 - the client, its weighted Δ folded into `running`
            u = inner(shared, d, k, st, loop)
            with torch.no_grad():
                for name, v in u.delta.items():
                    wv = u.weight.to(v.dtype) * v
                    running[name] = wv if name not in running else running[name].add_(wv)
            first.setdefault("delta", u.delta)
            return u._replace(delta={})

    mine, own = backend.map_own(fn, sent, data, keys, per_client_rows(client_state, each))
    weight = mine.weight if own else torch.zeros_like(mine.weight)  # a stand-in row counts for nothing
    total = shard.sum(weight.sum()).clamp(min=1e-12)
    with torch.no_grad():
        if backend.kind == "sequential":
            delta = {k: shard.sum(v if own else torch.zeros_like(v)) / total.to(v.dtype) for k, v in running.items()}
            own_delta = {k: v.unsqueeze(0) for k, v in first["delta"].items()}
        else:
            delta = {k: shard.sum(v) for k, v in agg.weighted_sum(mine.delta, weight / total).items()}
            own_delta = mine.delta
    rows = shard.gather((mine.weight, mine.metrics, mine.state), int(keys.shape[0]), data.n)
    return ClientUpdate(own_delta, rows[0], rows[1], rows[2], mine.extra), delta


def run_round(
    algorithm: Algorithm,
    local: LocalTrainer,
    backend: Backend,
    server: Server,
    data: ClientData,
    keys: Tensor,
    broadcast_key: Tensor,
    client_state: dict | None = None,
    count_flops: bool = False,
    ids: Tensor | None = None,
) -> RoundResult:
    """Run the cohort's local training and the server step; `server` is updated in place. `ids`: the
    cohort's training-population indices (for `broadcast_each` and `ClientUpdate.ids`; None: unknown)."""
    with torch.no_grad():
        theta = {k: v.detach() for k, v in server.params.items()}
        each = algorithm.broadcast_each(theta, ids)
    sent = algorithm.broadcast(theta, broadcast_key, server.state)
    flops = None
    # the default aggregate: sum Δ as it comes (sequential backend, several ranks) instead of stacking it
    reduce = reduces_by_sum(algorithm) and (backend.kind == "sequential" or backend.shard.world > 1)

    def compute():
        if reduce:
            return _summed_updates(algorithm, local, backend, sent, data, keys, client_state, each)
        return client_updates(algorithm, local, backend, sent, data, keys, client_state, each), None

    if count_flops:
        with counting_flops() as total:  # per client / per chunk (pfl.execution.counting_flops: memory)
            updates, delta = compute()
        flops = total[0]
    else:
        updates, delta = compute()
    return finish_round(algorithm, server, first_message(sent, each), updates, int(keys.shape[0]), client_state,
                        flops, delta, ids)


def finish_round(algorithm: Algorithm, server: Server, sent, updates: ClientUpdate, num: int,
                 client_state: dict | None, flops: int | None, delta: dict | None = None,
                 ids: Tensor | None = None) -> RoundResult:
    """The server's half of a round, from the cohort's stacked updates: aggregate (unless `delta`, the
    aggregate already summed as the updates came, is given), server step, bookkeeping. `sent`: what one
    client received (bytes down); `ids` become `updates.ids`."""
    if ids is not None:
        updates = updates._replace(ids=ids)
    with torch.no_grad():
        if delta is None:
            delta = algorithm.aggregate(updates, server.state)
        server.state = algorithm.server_update(server.params, delta, server.optimizer, server.state, updates)
    down, up = algorithm.bytes_exchanged(sent, updates)
    metrics = {k: float(v.float().mean()) for k, v in updates.metrics.items()}
    with torch.no_grad():
        server_metrics = {k: float(v) for k, v in algorithm.server_metrics(
            {k: v.detach() for k, v in server.params.items()}, server.state).items()}
    new_state = updates.state if client_state is not None and updates.state else None
    return RoundResult(updates, delta, metrics, server_metrics, down * num, up * num, new_state, flops)
