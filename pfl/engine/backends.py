"""Run one pure per-client function over a cohort: vectorized or in a loop.

`run_clients(fn, shared, data, keys, steps, backend)` calls
`fn(shared, data_i, key_i, max_steps, state_i)` for each client and returns
the results stacked along a leading client axis.

- `vmap`: one vectorized call per chunk of clients (torch.func.vmap,
  randomness="different"); the loop bound is the chunk's largest step count
  and every client is padded to the chunk's largest data.
- `sequential`: a plain Python loop; each client sees only its own rows and
  loops its own number of steps. It is the reference the tests compare vmap
  against, and it is faster for conv nets and LSTMs on a CPU.
- `auto`: vmap on accelerators, and on a CPU for models made of dense layers
  only; sequential on a CPU for models with convolutions or recurrences
  (measured by pfl/bench/engine_round.py).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map

from pfl.data.federated import ClientData

BACKENDS = ("auto", "vmap", "sequential")


def resolve_backend(backend: str, model: nn.Module, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"engine.backend={backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    if torch.device(device).type != "cpu":
        return "vmap"
    heavy = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell)
    # a module may declare itself heavy (pfl.models.lstm.LSTMLayer: an unrolled recurrence)
    return "sequential" if any(isinstance(m, heavy) or getattr(m, "sequential_on_cpu", False)
                               for m in model.modules()) else "vmap"


def _parts(data) -> tuple[ClientData, ...]:
    return (data,) if isinstance(data, ClientData) else tuple(data)


def _rebuild(data, parts):
    return parts[0] if isinstance(data, ClientData) else type(data)(*parts) if hasattr(data, "_fields") else tuple(parts)


def _aug(d: ClientData, index):
    return None if d.aug is None else d.aug[index]


def _client(data, i: int):
    """Client i's rows only (no padding beyond its own examples)."""
    parts = [ClientData(d.x[i, : max(int(d.n[i]), 1)], d.y[i, : max(int(d.n[i]), 1)], d.n[i], _aug(d, i))
             for d in _parts(data)]
    return _rebuild(data, parts)


def _chunk(data, sl: slice):
    """Clients in `sl`, padded only to the largest of them."""
    parts = []
    for d in _parts(data):
        width = max(int(d.n[sl].max()), 1)
        parts.append(ClientData(d.x[sl, :width], d.y[sl, :width], d.n[sl], _aug(d, sl)))
    return _rebuild(data, parts)


def _stack(results: list):
    return tree_map(lambda *xs: torch.stack(xs), *results)


def run_clients(
    fn: Callable,
    shared,
    data,
    keys: Tensor,
    steps: Tensor,
    backend: str,
    state=None,
    chunk_size: int | None = None,
):
    """Apply fn(shared, data_i, key_i, max_steps, state_i) to every client.

    `data` is a padded cohort `ClientData` (or a tuple of them, e.g. train and
    test); `steps[i]` is client i's step count, whose maximum over a chunk is
    the loop bound passed as `max_steps`. Results are stacked on dim 0.
    """
    num = keys.shape[0]
    if backend == "sequential":
        out = []
        for i in range(num):
            st = None if state is None else tree_map(lambda t: t[i], state)
            out.append(fn(shared, _client(data, i), keys[i], int(steps[i]), st))
        return _stack(out)
    if backend != "vmap":
        raise ValueError(f"unknown backend {backend!r}")
    chunk = chunk_size or num
    out = []
    for start in range(0, num, chunk):
        sl = slice(start, min(start + chunk, num))
        max_steps = int(steps[sl].max())
        st = None if state is None else tree_map(lambda t: t[sl], state)

        def one(d, k, s, _max=max_steps):
            return fn(shared, d, k, _max, s)

        part = _chunk(data, sl)
        # optional fields (ClientData.aug) may be None: not batched
        data_dims = tree_map(lambda t: None if t is None else 0, part, is_leaf=lambda t: t is None)
        vf = torch.func.vmap(one, in_dims=(data_dims, 0, None if st is None else 0), randomness="different")
        out.append(vf(part, keys[sl], st))
    return out[0] if len(out) == 1 else tree_map(lambda *xs: torch.cat(xs), *out)
