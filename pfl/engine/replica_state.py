"""The server-side state of a run's replicas (`replicas=R`; a single run is replica 0).

Each replica has its own seed, data, server parameters, per-client state, server
optimizer states and records. Replica 0's tensors are the LightningModule's own
(`global_params.*`, `client_state.*` in a checkpoint, the names a single run has);
replica r >= 1's live in a `ReplicaTensors` under `replica_tensors.<r-1>.*`.
`save_records` / `load_records` put everything that is not a tensor into a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from pfl.data.federated import FederatedData
from pfl.engine.checkpoint import CheckpointError


@dataclass
class Replica:
    """One independently seeded copy of the run."""

    seed: int
    data: FederatedData
    tensors: nn.Module  # .global_params (ParameterDict) and .client_state (ParameterDict or None)
    server_states: list  # per stage
    history: list = field(default_factory=list)  # this replica's evaluation rows
    track_history: list = field(default_factory=list)  # this replica's tracked rows (rounds to target)
    bytes_total: dict = field(default_factory=lambda: {"down": 0, "up": 0})
    last_eval: dict = field(default_factory=dict)


class ReplicaTensors(nn.Module):
    """Replica r >= 1's parameters and per-client state (replica 0's are the module's own)."""

    def __init__(self, global_params: nn.ParameterDict, client_state: nn.ParameterDict | None):
        super().__init__()
        self.global_params = global_params
        self.client_state = client_state


def init_replica(stages, model_params: dict, num_clients: int):
    """(server parameters, per-client state or None, server states per stage, parameter names, state names)
    of a replica whose model starts from `model_params`; names map ParameterDict keys to parameter names."""
    first = stages[0].algorithm
    # the server's parameters: the model's, or the algorithm's own (AFML's Gaussian encoder)
    init = first.init_population(first.init_global(model_params), num_clients)
    params = nn.ParameterDict({safe(k): nn.Parameter(v) for k, v in init.items()})
    # each stage's algorithm state on the server (checkpointed)
    states = [s.algorithm.init_server_state(init, num_clients=num_clients, rounds=s.rounds) for s in stages]
    client_state, state = None, first.init_client_state(init)
    if state is not None:  # one slot per training client, stacked
        client_state = nn.ParameterDict(
            {safe(k): nn.Parameter(v.unsqueeze(0).repeat(num_clients, *[1] * v.dim()), requires_grad=False)
             for k, v in state.items()})
    return params, client_state, states, {safe(k): k for k in init}, {safe(k): k for k in (state or {})}


def save_records(module, checkpoint: dict) -> None:
    """The run's records beside its tensors: histories, bytes, FLOPs, the torch RNG, server states."""
    checkpoint["pfl"] = {
        "history": module.history,
        "track_history": module.track_history,
        "bytes_total": dict(module.bytes_total),
        "flops": dict(module.flops),
        "rng": {"torch": torch.get_rng_state()},
        "param_names": dict(module._names),
        "server_states": module.server_states,
    }
    if len(module.reps) > 1:  # every replica's own records (replica 0's also under the keys above)
        checkpoint["pfl"]["replicas"] = [{"history": rep.history, "bytes_total": dict(rep.bytes_total),
                                          "server_states": rep.server_states, "track_history": rep.track_history}
                                         for rep in module.reps]


def load_records(module, checkpoint: dict) -> None:
    rename_legacy(module, checkpoint)
    extra = checkpoint.get("pfl", {})
    module.history = list(extra.get("history", []))
    module.track_history = list(extra.get("track_history", []))
    module.flops = dict(extra.get("flops", {}))
    saved = extra.get("replicas")
    if saved is None:
        saved = [{"history": module.history, "bytes_total": extra.get("bytes_total", {"down": 0, "up": 0}),
                  "track_history": module.track_history,
                  **({"server_states": extra["server_states"]} if "server_states" in extra else {})}]
    if len(saved) != len(module.reps):
        raise CheckpointError("resume", "", f"resume: the checkpoint holds {len(saved)} replica(s), the run "
                              f"has replicas={len(module.reps)}")
    for rep, s in zip(module.reps, saved):
        rep.history = list(s["history"])
        rep.bytes_total = dict(s["bytes_total"])
        rep.track_history = list(s.get("track_history", []))
        if "server_states" in s:
            rep.server_states = list(s["server_states"])
    if "rng" in extra:
        torch.set_rng_state(extra["rng"]["torch"])


def rename_legacy(module, checkpoint: dict) -> None:
    """A checkpoint's tensors under the names the model had then (EmnistCNN's `fc2`), under today's
    (pfl.models.RENAMED), where the module lacks the old name and has the new one."""
    from pfl.models import current_name

    tensors, own = checkpoint.get("state_dict", {}), set(module.state_dict())
    for key in [k for k in tensors if k not in own]:
        where, _, name = key.rpartition(".")
        new = f"{where}.{safe(current_name(name.replace('__', '.')))}" if where else key
        if new in own and new not in tensors:
            tensors[new] = tensors.pop(key)


def safe(name: str) -> str:
    """ParameterDict keys may not contain dots."""
    return name.replace(".", "__")
