"""`engine.chunk_size=auto` / `engine.eval_chunk_size=auto`: clients per vmap call from free memory.

Under vmap every client of a chunk holds its own copy of the model's working set at once, so the
chunk is what bounds peak memory (a 900-client evaluation on a 16 GB GPU must be chunked). The
estimate for one vmapped client, in bytes:

    per_client = parameters x (3 + optimizer copies)      current params, gradient, next params,
                                                           + the optimizer state (SGD 0, momentum 1, Adam 2)
               + activations                               what autograd saves in one probe
                                                           forward/backward on one minibatch of one client
                                                           (torch.autograd.graph.saved_tensors_hooks;
                                                           device independent, so the probe runs on the CPU)
               + data                                      the client's padded examples (largest client),
                                                           train and, for evaluation, test

    chunk = floor(headroom x free / per_client), between 1 and the number of clients

`free` is `torch.cuda.mem_get_info` on CUDA and MemAvailable (/proc/meminfo) on a CPU; where
neither is known the whole cohort is one chunk. `headroom` (0.5) leaves room for what the
estimate ignores: the allocator's fragmentation, vmap's temporaries, the data set on the device.
`choose_chunk` is the pure rule (tested with given numbers); `auto_chunk` measures and applies it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger("pfl")

HEADROOM = 0.5


def _nbytes(tree) -> int:
    from torch.utils._pytree import tree_leaves

    return sum(t.numel() * t.element_size() for t in tree_leaves(tree) if isinstance(t, Tensor))


def free_bytes(device) -> int | None:
    """Free memory on `device`: CUDA's free bytes, the CPU's available RAM; None when unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def activation_bytes(local, params: dict, x: Tensor, y: Tensor) -> int:
    """Bytes autograd saves for the backward of one minibatch (x, y) of one client."""
    saved = 0

    def pack(t):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    mask = torch.ones(x.shape[0], dtype=torch.bool)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = local.task.loss(leaves, x, y, mask, None)
    loss.backward()
    return saved


def client_bytes(local, params: dict, split, with_test=None) -> dict:
    """The per-client estimate and its parts (bytes) for clients of `split` trained by `local`."""
    width = max(int(split.counts.max()) if len(split.counts) else 1, 1)
    p = _nbytes(params)
    opt = _nbytes(local.opt.init(params))
    batch = min(local.batch_size, width)
    x, y = split.x[:batch], split.y[:batch]
    act = activation_bytes(local, params, x, y) if len(x) else 0
    example = (split.x[:1].numel() * split.x.element_size() + split.y[:1].numel() * split.y.element_size())
    data = width * example
    if with_test is not None:
        tw = max(int(with_test.counts.max()) if len(with_test.counts) else 1, 1)
        data += tw * (with_test.x[:1].numel() * with_test.x.element_size()
                      + with_test.y[:1].numel() * with_test.y.element_size())
    parts = {"parameters": 3 * p + opt, "activations": act, "data": data}
    parts["total"] = sum(parts.values())
    return parts


def choose_chunk(per_client: int, free: int | None, clients: int, headroom: float = HEADROOM) -> int:
    """Clients per vmap call: as many as fit in `headroom` of `free` bytes, between 1 and `clients`."""
    clients = max(int(clients), 1)
    if free is None or per_client <= 0:
        return clients
    return int(min(max(int(headroom * free) // int(per_client), 1), clients))


def auto_chunk(local, params: dict, split, device, clients: int, what: str, test_split=None) -> int:
    """`choose_chunk` for this model, data and device, logged with its numbers."""
    parts = client_bytes(local, params, split, test_split)
    free = free_bytes(device)
    chunk = choose_chunk(parts["total"], free, clients)
    log.info("%s=auto: %d of %d clients per vmap call (%.1f MB per client estimated: parameters %.1f, "
             "activations %.1f, data %.1f; %s free on %s)", what, chunk, clients, parts["total"] / 2**20,
             parts["parameters"] / 2**20, parts["activations"] / 2**20, parts["data"] / 2**20,
             "unknown" if free is None else f"{free / 2**30:.1f} GB", torch.device(device))
    return chunk
