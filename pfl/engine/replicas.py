"""Replicas as a batch axis: R independently seeded copies of one configuration in one run.

`replicas=R` trains replica r exactly as a separate run with `seed = seed + r` would: its own
data set (built with that seed), model initialization, cohorts, minibatches, dropout and
evaluation sample. What the replicas share is the computation:

    per replica (cheap, O(parameters)):  sent_r = algorithm.broadcast(θ_r, key_r, s_r)
    all replicas together (the cost):     backend.map(client_update) over the R·C clients of the
                                          R cohorts, one flat client axis; client j reads its
                                          replica's broadcast by index (sent[replica_j])
    per replica (cheap):                  aggregate, server_update with replica r's own torch
                                          optimizer and server state, bookkeeping

So under vmap the R cohorts are one vectorized call (chunked by `engine.chunk_size` over the
R·C clients, sharded like any cohort), and the sequential backend loops over all R·C clients.
The server step stays a loop: server states hold Python numbers and are updated in place, and
a torch optimizer steps its own Parameters; stepping R of them costs what R parameter updates
cost. Algorithms never see the replica axis: every hook is called as in a single run.

What cannot run replicated fails with one line (`ReplicaError`): a broadcast whose non-tensor
parts (a Python flag such as FedAvg-FT's switch) differ between replicas, or whose tensors differ
in shape. Evaluation runs replica by replica (each one vmapped over its clients as usual).

Logged rows (metrics.csv and every logger) carry, for R > 1, each replica's value under
`replica<r>/<name>` and the mean over replicas under the plain name, so sweep objectives
(`heldout/pers_acc_5`) and plots read the mean. summary.json holds one single-run summary per
replica (`replicas`), the mean and sample standard deviation of the headline accuracies
(`mean`, `std`), and mean values in the top-level keys; `python -m pfl.report.seeds` counts a
replicated run as R runs (one per replica), exactly as R separate seeded runs.
"""

from __future__ import annotations

import statistics

import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from pfl.algorithms.base import Algorithm
from pfl.algorithms.local import LocalTrainer
from pfl.config.errors import ConfigError
from pfl.engine.round import RoundResult, Server, finish_round, first_message, run_round
from pfl.execution import Backend, _parts, _rebuild, counting_flops  # how a backend splits and rebuilds ClientData


class ReplicaError(ConfigError):
    """An algorithm whose round cannot run on the replica axis."""

    def __init__(self, message: str):
        self.key, self.value, self.allowed = "replicas", "", message
        ValueError.__init__(self, message)


def replica_name(r: int, name: str) -> str:
    """The logged name of replica r's value of metric `name`."""
    return f"replica{r}/{name}"


# -- the round ----------------------------------------------------------------------

def _stack_broadcasts(sents: list):
    """(spec, fixed leaves, stacked tensor leaves): tensors get a leading replica axis; anything
    else must be the same in every replica (it may steer the client's control flow)."""
    flat = [tree_flatten(s) for s in sents]
    spec = flat[0][1]
    if any(f[1] != spec for f in flat[1:]):
        raise ReplicaError("replicas: the algorithm's broadcast has a different structure in different replicas; "
                           "it cannot run replicated (use replicas=1 and seeds as separate runs)")
    fixed, tensors = {}, {}
    for i, leaf in enumerate(flat[0][0]):
        leaves = [f[0][i] for f in flat]
        if isinstance(leaf, Tensor):
            if any(t.shape != leaf.shape for t in leaves):
                raise ReplicaError("replicas: the algorithm broadcasts tensors of different shapes in different "
                                   "replicas; it cannot run replicated (use replicas=1 and separate seeded runs)")
            tensors[i] = torch.stack(leaves)
        else:
            if any(v != leaf for v in leaves[1:]):
                raise ReplicaError(f"replicas: the algorithm's broadcast holds a non-tensor value that differs "
                                   f"between replicas ({leaves}); it cannot run replicated (use replicas=1 and "
                                   "separate seeded runs)")
            fixed[i] = leaf
    return spec, fixed, tensors


def _unstack(spec, fixed: dict, tensors: dict, index: Tensor):
    """Replica `index`'s broadcast (under vmap `index` is batched: a gather per client)."""
    leaves = [fixed[i] if i in fixed else tensors[i][index] for i in range(len(fixed) + len(tensors))]
    return tree_unflatten(leaves, spec)


def _pad(t: Tensor, width: int) -> Tensor:
    """[C, W, ...] -> [C, width, ...]; the padding repeats each client's first row (masked everywhere)."""
    extra = width - t.shape[1]
    return t if extra == 0 else torch.cat([t, t[:, :1].expand(t.shape[0], extra, *t.shape[2:])], 1)


def concat_clients(datas: list):
    """The replicas' cohort data (ClientData, or tuples of them) as one cohort, padded to the widest.
    Padding does not change a client's result (minibatch orders depend only on its real examples)."""
    parts = [_parts(d) for d in datas]
    out = []
    for j in range(len(parts[0])):
        ds = [p[j] for p in parts]
        width = max(d.x.shape[1] for d in ds)
        aug = None
        if any(d.aug is not None for d in ds):
            aug = torch.cat([d.aug if d.aug is not None else torch.zeros_like(d.n, dtype=torch.bool) for d in ds])
        out.append(type(ds[0])(torch.cat([_pad(d.x, width) for d in ds]), torch.cat([_pad(d.y, width) for d in ds]),
                               torch.cat([d.n for d in ds]), aug))
    return _rebuild(datas[0], out)


def run_replicas(
    algorithm: Algorithm,
    local: LocalTrainer,
    backend: Backend,
    servers: list[Server],
    datas: list,
    keys: list[Tensor],
    broadcast_keys: list[Tensor],
    client_states: list[dict | None],
    count_flops: bool = False,
    ids: list[Tensor] | None = None,
) -> list[RoundResult]:
    """One round of every replica: the clients of all R cohorts in one `backend.map`, then each
    replica's own aggregate and server step. Replica r's result equals
    `run_round(..., servers[r], datas[r], keys[r], broadcast_keys[r], client_states[r], ids=ids[r])`."""
    ids = ids if ids is not None else [None] * len(servers)
    if len(servers) == 1:
        return [run_round(algorithm, local, backend, servers[0], datas[0], keys[0], broadcast_keys[0],
                          client_states[0], count_flops, ids=ids[0])]
    sents, eaches = [], []
    for server, bkey, rids in zip(servers, broadcast_keys, ids):
        with torch.no_grad():
            theta = {k: v.detach() for k, v in server.params.items()}
            eaches.append(algorithm.broadcast_each(theta, rids))
        sents.append(algorithm.broadcast(theta, bkey, server.state))
    spec, fixed, tensors = _stack_broadcasts(sents)
    sizes = [int(k.shape[0]) for k in keys]
    device = keys[0].device
    rows = {"replica": torch.repeat_interleave(torch.arange(len(sizes), device=device),
                                               torch.as_tensor(sizes, device=device))}
    stateful = client_states[0] is not None
    if stateful:
        rows["state"] = tree_map(lambda *ts: torch.cat(ts), *client_states)
    if eaches[0] is not None:  # broadcast_each: every client's own row, the replicas' cohorts in order
        rows["sent"] = tree_map(lambda *ts: torch.cat(ts), *eaches)

    def client(shared, d, k, row, loop):
        sent = _unstack(spec, fixed, tensors, row["replica"])
        if "sent" in row:
            sent = {**sent, **row["sent"]}
        return algorithm.client_update(local.using(loop), sent, d, k, row["state"] if stateful else None)

    data, all_keys = concat_clients(datas), torch.cat(keys)
    flops = None
    if count_flops:
        with counting_flops() as total:
            updates = backend.map(client, None, data, all_keys, rows)
        flops = total[0] // len(sizes)  # per replica (padding to the widest included)
    else:
        updates = backend.map(client, None, data, all_keys, rows)
    out, start = [], 0
    for server, sent, each, n, state, rids in zip(servers, sents, eaches, sizes, client_states, ids):
        mine = tree_map(lambda t, a=start, b=start + n: t[a:b], updates)
        out.append(finish_round(algorithm, server, first_message(sent, each), mine, n, state, flops, ids=rids))
        start += n
    return out


# -- rows and summaries -------------------------------------------------------------

#: row entries that are the same for every replica or describe the whole run: not repeated per replica
_RUN_WIDE = ("round", "stage", "bytes/", "time/")


def combine_rows(rows: list[dict]) -> dict:
    """One logged row from the replicas' rows: the mean over replicas under each plain name (lists,
    e.g. the curve, elementwise; times: the largest, i.e. the whole evaluation's), and replica r's
    own values under `replica<r>/<name>` (not the run-wide ones: round, stage, bytes, times)."""
    if len(rows) == 1:
        return rows[0]
    out: dict = {}
    for k, v in rows[0].items():
        vals = [r.get(k) for r in rows]
        if isinstance(v, list):
            out[k] = [statistics.fmean(x) for x in zip(*vals)]
        elif k in ("round", "stage") or isinstance(v, bool) or not isinstance(v, (int, float)) \
                or any(not isinstance(x, (int, float)) for x in vals):
            out[k] = v
        elif k.startswith("time/"):
            out[k] = max(vals)
        else:
            out[k] = statistics.fmean(vals)
    for r, row in enumerate(rows):
        out.update({replica_name(r, k): v for k, v in row.items() if isinstance(v, (int, float))
                    and not isinstance(v, bool) and not k.startswith(_RUN_WIDE)})
    return out


#: the headline accuracies whose mean and std a replicated summary reports
HEADLINE = ("initial_accuracy", "personalized_accuracy", "fraction_worse", "train_clients.initial_accuracy",
            "train_clients.personalized_accuracy")


def _leaves(node, prefix: str) -> dict[str, float]:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(_leaves(v, f"{prefix}.{k}"))
        return out
    return {prefix: float(node)} if isinstance(node, (int, float)) and not isinstance(node, bool) else {}


def _get(summary: dict, path: str):
    node = summary
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def combine_summaries(top: dict, summaries: list[dict]) -> dict:
    """summary.json of a replicated run: `top` (the summary of the logged rows, whose accuracies are
    the replicas' means) with `replicas` (each replica's own summary, as its separate run would
    write it), `mean` and `std` (sample std, n-1) of the headline accuracies by dotted key
    (`personalized_accuracy.5`), and `seeds`."""
    values: dict[str, list[float]] = {}
    for s in summaries:
        for path in HEADLINE:
            for k, v in _leaves(_get(s, path), path).items():
                values.setdefault(k, []).append(v)
    mean = {k: statistics.fmean(v) for k, v in values.items() if len(v) == len(summaries)}
    std = {k: statistics.stdev(values[k]) if len(values[k]) > 1 else 0.0 for k in mean}
    return {**top, "seeds": [s["seed"] for s in summaries], "replicas": summaries, "mean": mean, "std": std}
