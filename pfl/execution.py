"""How per-client functions run over a cohort: the backends and the one step loop.

A `Backend` is chosen once from the config (`make_backend`) and handed to
whoever runs clients: the round (pfl.engine.round) and the personalization
evaluation (pfl.evaluation). `Backend.map(fn, shared, data, keys, state)`
calls `fn(shared, data_i, key_i, state_i, loop)` for every client and stacks
the results along a leading client axis.

- `vmap`: one vectorized call per chunk of clients (torch.func.vmap,
  randomness="different"); every client of a chunk is padded to the chunk's
  largest data.
- `sequential`: a plain Python loop; each client sees only its own rows. It is
  the reference the tests compare vmap against, and it is faster for conv nets
  and LSTMs on a CPU.
- `auto`: vmap on accelerators, and on a CPU for models made of dense layers
  only; sequential on a CPU for models with convolutions or recurrences
  (measured with `python -m pfl.bench`, docs/performance.md).

Under Lightning's distributed strategy a backend also carries a `Shard`
(this process's rank among `world` processes): `map` then computes only this
rank's share of the clients (balanced by their example counts) and all-gathers every result, so each
rank holds the whole cohort's results, in cohort order, exactly as one
process would (each client's computation depends only on its own data and key).

`loop` is a `StepLoop`: the only masked local-step loop in pfl. Algorithms say
what one step does and how many steps a client takes (a number, or a function
of the client's example count); the loop bound is the backend's business: the
chunk's largest count under vmap (extra steps are masked no-ops, so every
client's result equals its sequential one), the client's own count in the
sequential backend.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, replace
from typing import Callable, Union

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

BACKENDS = ("auto", "vmap", "sequential")

#: a step count: the same for every client, or a function of the client's example count n
Count = Union[int, Callable[[Tensor], Tensor]]


def under_vmap() -> bool:
    """True inside torch.func.vmap (where shapes may not depend on a client's values)."""
    stack = torch._C._functorch.get_interpreter_stack() or []
    return any(i.key() == torch._C._functorch.TransformType.Vmap for i in stack)


def where_tree(cond: Tensor, new, old):
    """Elementwise choice between two (nested) dicts / tuples of tensors."""
    if isinstance(new, dict):
        return {k: where_tree(cond, new[k], old[k]) for k in new}
    if isinstance(new, (tuple, list)):
        return type(new)(where_tree(cond, a, b) for a, b in zip(new, old))
    return torch.where(cond, new, old)


class StepLoop:
    """carry = step(carry, s) for the s < count steps of each client.

    `n` holds the (unbatched) example counts of the clients this loop serves:
    a vmap chunk or one client. The Python loop runs to the largest count
    among them; inside `fn` the client's own (possibly vmap-batched) count
    masks the extra iterations.
    """

    def __init__(self, n: Tensor):
        self.n = n.reshape(-1)

    @staticmethod
    def per_client(count: Count, n: Tensor) -> Tensor:
        """The client's step count as a tensor (n: its example count)."""
        if callable(count):
            return count(n)
        return torch.full_like(n, int(count))

    def bound(self, count: Count) -> int:
        if not callable(count):
            return int(count)
        return int(count(self.n).max()) if self.n.numel() else 0

    def __call__(self, carry, step: Callable[[object, int], object], count: Count, n: Tensor | None = None):
        """Run `step` count times from `carry`; `n` (the client's example count)
        is needed when `count` is a function of it."""
        bound = self.bound(count)
        if not callable(count) or self.n.numel() == 1:  # one count for all, or one client: nothing to mask
            for s in range(bound):
                carry = step(carry, s)
            return carry
        limit = self.per_client(count, n)
        for s in range(bound):
            carry = where_tree(torch.as_tensor(s, device=limit.device) < limit, step(carry, s), carry)
        return carry


def _parts(data) -> tuple:
    return (data,) if hasattr(data, "n") else tuple(data)


def _rebuild(data, parts):
    if hasattr(data, "n"):
        return parts[0]
    return type(data)(*parts) if hasattr(data, "_fields") else tuple(parts)


def _aug(d, index):
    return None if d.aug is None else d.aug[index]


def _client(data, i: int):
    """Client i's rows only (no padding beyond its own examples)."""
    parts = [type(d)(d.x[i, : max(int(d.n[i]), 1)], d.y[i, : max(int(d.n[i]), 1)], d.n[i], _aug(d, i))
             for d in _parts(data)]
    return _rebuild(data, parts)


def _chunk(data, sl: slice | Tensor):
    """Clients in `sl` (a slice or indices), padded only to the largest of them."""
    parts = []
    for d in _parts(data):
        width = max(int(d.n[sl].max()), 1)
        parts.append(type(d)(d.x[sl, :width], d.y[sl, :width], d.n[sl], _aug(d, sl)))
    return _rebuild(data, parts)


def _steps_n(data) -> Tensor:
    """The example counts step loops count over: the first part's (the client's training data)."""
    return _parts(data)[0].n


@dataclass(frozen=True)
class Shard:
    """This process's share of every client list: rank `rank` of `world` processes.

    With the clients' costs (`weights`, e.g. their example counts) the clients are dealt so that the
    ranks' sums are close (longest first, each to the least loaded rank); without, in contiguous
    blocks. The split depends only on `num` and `weights`, so every rank computes the same one."""

    rank: int = 0
    world: int = 1

    def assignment(self, num: int, weights: Tensor | None = None) -> list[Tensor]:
        """For every rank, the (ascending) indices of the clients it computes."""
        if weights is None or self.world == 1:
            per = -(-num // self.world)
            return [torch.arange(min(r * per, num), min((r + 1) * per, num)) for r in range(self.world)]
        cost = [float(w) + 1.0 for w in weights.reshape(-1).tolist()]  # + 1: a client's fixed cost
        load, members = [0.0] * self.world, [[] for _ in range(self.world)]
        for i in sorted(range(num), key=lambda j: (-cost[j], j)):
            r = min(range(self.world), key=lambda q: (load[q], q))
            load[r] += cost[i]
            members[r].append(i)
        return [torch.tensor(sorted(m), dtype=torch.long) for m in members]

    def part(self, num: int, rank: int | None = None, weights: Tensor | None = None) -> Tensor:
        """The indices of the clients that `rank` (default: this one) computes."""
        return self.assignment(num, weights)[self.rank if rank is None else rank]

    def total(self, value: int) -> int:
        """The sum of an integer over the ranks."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(t)
        return int(t)

    def sum(self, t: Tensor) -> Tensor:
        """The elementwise sum of `t` over the ranks (the same result on every rank)."""
        if self.world == 1:
            return t
        import torch.distributed as dist

        out = t.clone()
        dist.all_reduce(out)
        return out

    def gather(self, local, num: int, weights: Tensor | None = None):
        """Every rank's results (leading axis) put back in client order: all `num` rows. `weights` must
        be those this rank's share was chosen with (`part`)."""
        if self.world == 1:
            return local
        import torch.distributed as dist

        parts_of = self.assignment(num, weights)
        per = max(max(len(p) for p in parts_of), 1)
        order = torch.cat(parts_of)
        leaves, spec = tree_flatten(local)
        out = []
        for t in leaves:
            wire = t.to(torch.uint8) if t.dtype == torch.bool else t  # gloo has no bool collectives
            pad = per - wire.shape[0]
            if pad > 0:
                wire = torch.cat([wire, wire[:1].expand(pad, *wire.shape[1:])])
            parts = [torch.empty_like(wire) for _ in range(self.world)]
            dist.all_gather(parts, wire.contiguous())
            ranked = torch.cat([p[:len(ix)] for p, ix in zip(parts, parts_of)])
            full = torch.empty_like(ranked)
            full[order.to(full.device)] = ranked
            out.append(full.to(torch.bool) if t.dtype == torch.bool else full)
        return tree_unflatten(out, spec)


_FLOPS: contextvars.ContextVar = contextvars.ContextVar("pfl_flops", default=None)


@contextlib.contextmanager
def counting_flops():
    """Count the FLOPs (torch's FlopCounterMode) of every client computation a Backend runs inside
    the block; yields a one-element list holding the sum. Counted per client (sequential) or per
    chunk (vmap): one counter around a whole sequential cohort held about 40 MB per CNN client until
    it exited (peers case: a first-round peak of 1356 MB RSS, against 546 MB without counting)."""
    total = [0]
    token = _FLOPS.set(total)
    try:
        yield total
    finally:
        _FLOPS.reset(token)


def _counted(call: Callable):
    total = _FLOPS.get()
    if total is None:
        return call()
    from torch.utils.flop_counter import FlopCounterMode

    token = _FLOPS.set(None)  # anything nested is inside this counter already
    try:
        with FlopCounterMode(display=False) as counter:
            out = call()
    finally:
        _FLOPS.reset(token)
    total[0] += int(counter.get_total_flops())
    return out


@dataclass(frozen=True)
class Backend:
    """Runs a per-client function over clients; `chunk_size` bounds one vmap call."""

    kind: str = "sequential"
    chunk_size: int | None = None
    shard: Shard = Shard()
    compile: bool = False  # engine.compile: torch.compile each vmapped chunk call (eager after one failure)

    def __post_init__(self):
        if self.kind not in ("vmap", "sequential"):
            raise ValueError(f"engine.backend={self.kind!r}: expected vmap or sequential here (auto is resolved by make_backend)")

    def sharded(self, rank: int, world: int) -> "Backend":
        """This backend computing rank `rank`'s share of `world` processes."""
        return replace(self, shard=Shard(rank, world))

    def map(self, fn: Callable, shared, data, keys: Tensor, state=None, progress: Callable[[int], None] | None = None):
        """fn(shared, data_i, key_i, state_i, loop) for every client, stacked on dim 0.

        `data` is padded cohort `ClientData` (or a tuple of them, e.g. train and
        test); `state` (optional) a dict of tensors with a leading client axis;
        `progress(n)` (optional) is told after every n clients done (here, times
        the number of ranks: an estimate of the whole)."""
        if self.shard.world == 1:
            return self._map(fn, shared, data, keys, state, progress)
        mine, _ = self.map_own(fn, shared, data, keys, state, progress)
        return self.shard.gather(mine, keys.shape[0], _steps_n(data))

    def map_own(self, fn: Callable, shared, data, keys: Tensor, state=None, progress=None):
        """(results, count): `map` of this rank's share of the clients only (`Shard.part`, balanced by
        the clients' example counts), not gathered. `count` is the number of real rows: 0 where this
        rank has no client (the one row is then a stand-in, computed on client 0 so that shapes agree
        across ranks; its results must not count)."""
        num = keys.shape[0]
        sl = self.shard.part(num, weights=_steps_n(data))
        own = len(sl)
        if own == 0:
            sl = torch.zeros(1, dtype=torch.long)
        sl = sl.to(keys.device)
        scaled = None if progress is None or self.shard.world == 1 else (lambda n: progress(n * self.shard.world))
        mine = self._map(fn, shared, _chunk(data, sl), keys[sl], None if state is None else tree_map(lambda t: t[sl], state),
                         scaled or progress)
        return mine, own

    def _map(self, fn: Callable, shared, data, keys: Tensor, state=None, progress=None):
        num = keys.shape[0]
        tick = progress or (lambda n: None)
        if self.kind == "sequential":
            # each client's result goes straight into its row of the stacked output: one copy of the
            # cohort's results in memory (a list of them and then their stack would be two)
            out = None
            for i in range(num):
                st = None if state is None else tree_map(lambda t: t[i], state)
                d = _client(data, i)
                res = _counted(lambda: fn(shared, d, keys[i], st, StepLoop(_steps_n(d))))
                if out is None:
                    out = tree_map(lambda t: t.new_empty((num, *t.shape)), res)
                tree_map(lambda dst, src: dst[i].copy_(src), out, res)
                del res
                tick(1)
            return out
        chunk = self.chunk_size or num
        out = []
        for start in range(0, num, chunk):
            sl = slice(start, min(start + chunk, num))
            st = None if state is None else tree_map(lambda t: t[sl], state)
            part = _chunk(data, sl)
            loop = StepLoop(_steps_n(part))

            def one(d, k, s, _loop=loop):
                return fn(shared, d, k, s, _loop)

            # optional fields (ClientData.aug) may be None: not batched
            data_dims = tree_map(lambda t: None if t is None else 0, part, is_leaf=lambda t: t is None)
            vf = torch.func.vmap(one, in_dims=(data_dims, 0, None if st is None else 0), randomness="different")
            out.append(_counted(lambda: _compiled_call(vf, part, keys[sl], st) if self.compile else vf(part, keys[sl], st)))
            tick(sl.stop - sl.start)
        return out[0] if len(out) == 1 else tree_map(lambda *xs: torch.cat(xs), *out)


_COMPILE_FAILED: list[str] = []  # the first failure's reason: later calls run eager without trying again


def _compiled_call(vf, *args):
    """vf(*args) through torch.compile; on failure one warning and eager from then on. Dynamo
    guards on the closures of the client function, so a new round's function may recompile
    (torch's cache limit then falls back to eager by itself): it pays where one compiled chunk
    runs many local steps on an accelerator, rarely on a CPU."""
    if not _COMPILE_FAILED:
        try:
            return torch.compile(vf)(*args)
        except Exception as exc:  # noqa: BLE001 - any compiler failure: run eager instead
            first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            _COMPILE_FAILED.append(first)
            import logging

            logging.getLogger("pfl").warning("engine.compile=true: torch.compile failed (%s: %s); running eager",
                                             type(exc).__name__, first[:200])
    return vf(*args)


def make_backend(name: str, model: nn.Module, device, chunk_size: int | None = None,
                 compile: bool = False) -> Backend:
    """The backend `engine.backend=name` selects for this model on this device."""
    if name not in BACKENDS:
        raise ValueError(f"engine.backend={name!r}: expected one of {', '.join(BACKENDS)}")
    if name == "auto":
        name = "vmap"
        if torch.device(device).type == "cpu":
            heavy = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell)
            # a module may declare itself heavy (pfl.models.lstm.LSTMLayer: an unrolled recurrence)
            if any(isinstance(m, heavy) or getattr(m, "sequential_on_cpu", False) for m in model.modules()):
                name = "sequential"
    return Backend(name, chunk_size, compile=compile)
