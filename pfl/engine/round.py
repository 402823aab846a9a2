"""One communication round, as a plain function of the server and the cohort.

    sent    = algorithm.broadcast(θ, key, s)
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
from torch.utils.flop_counter import FlopCounterMode

from pfl import rng
from pfl.algorithms.base import Algorithm, ClientUpdate
from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import ClientData
from pfl.execution import Backend


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
                   keys: Tensor, client_state: dict | None = None) -> ClientUpdate:
    """Every client's `client_update` (stacked), each on the backend's step loop."""

    def client(shared, d, k, st, loop):
        return algorithm.client_update(local.using(loop), shared, d, k, st)

    return backend.map(client, sent, data, keys, client_state)


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
) -> RoundResult:
    """Run the cohort's local training and the server step; `server` is updated in place."""
    with torch.no_grad():
        theta = {k: v.detach() for k, v in server.params.items()}
    sent = algorithm.broadcast(theta, broadcast_key, server.state)
    flops = None
    if count_flops:
        with FlopCounterMode(display=False) as counter:
            updates = client_updates(algorithm, local, backend, sent, data, keys, client_state)
        flops = int(counter.get_total_flops())
    else:
        updates = client_updates(algorithm, local, backend, sent, data, keys, client_state)
    return finish_round(algorithm, server, sent, updates, int(keys.shape[0]), client_state, flops)


def finish_round(algorithm: Algorithm, server: Server, sent, updates: ClientUpdate, num: int,
                 client_state: dict | None, flops: int | None) -> RoundResult:
    """The server's half of a round, from the cohort's stacked updates: aggregate, server step, bookkeeping."""
    with torch.no_grad():
        delta = algorithm.aggregate(updates, server.state)
        server.state = algorithm.server_update(server.params, delta, server.optimizer, server.state, updates)
    down, up = algorithm.bytes_exchanged(sent, updates)
    metrics = {k: float(v.float().mean()) for k, v in updates.metrics.items()}
    with torch.no_grad():
        server_metrics = {k: float(v) for k, v in algorithm.server_metrics(
            {k: v.detach() for k, v in server.params.items()}, server.state).items()}
    new_state = updates.state if client_state is not None and updates.state else None
    return RoundResult(updates, delta, metrics, server_metrics, down * num, up * num, new_state, flops)
