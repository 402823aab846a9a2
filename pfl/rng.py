"""Counter-based random numbers: pure functions of an integer key.

Randomness inside client training (minibatch order, dropout masks, noise
samples) is drawn from keys, never from a global generator. A key is an int64
tensor; `fold(key, data)` derives a new key. Because every draw is a pure
function of (key, shape), the vmapped and the sequential backends see exactly
the same numbers, a resumed run repeats the uninterrupted one bit for bit, and
functions stay legal under `torch.func.vmap` with a batched key.

The hash is a 32-bit integer mixer (xorshift-multiply, constants below 2**31
so that products of 32-bit values fit in int64 without overflow).
"""

from __future__ import annotations

import torch
from torch import Tensor

_MASK = 0xFFFFFFFF
_M1 = 0x7FEB352D
_M2 = 0x68E31DA5
_GOLDEN = 0x1E3779B9


def _mix(h: Tensor) -> Tensor:
    h = h & _MASK
    h = h ^ (h >> 16)
    h = (h * _M1) & _MASK
    h = h ^ (h >> 15)
    h = (h * _M2) & _MASK
    h = h ^ (h >> 16)
    return h


def key(*parts: int) -> Tensor:
    """A key from Python integers (seed, round, client, a salt, ...)."""
    k = torch.tensor(0x2545F491, dtype=torch.int64)
    for p in parts:
        k = fold(k, int(p))
    return k


def fold(k: Tensor, data) -> Tensor:
    """A new key derived from key `k` and an int or int tensor `data`."""
    if not isinstance(data, Tensor):
        data = torch.as_tensor(int(data) & _MASK, dtype=torch.int64, device=k.device)
    return _mix(_mix(k) ^ ((data.to(torch.int64) & _MASK) * _GOLDEN & _MASK))


def bits(k: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Uniform 32-bit integers (int64 tensor) of `shape`, a function of k alone."""
    n = 1
    for s in shape:
        n *= s
    counter = torch.arange(n, dtype=torch.int64, device=k.device).reshape(shape)
    return _mix(_mix(counter * _GOLDEN + k) ^ k)


def uniform(k: Tensor, shape: tuple[int, ...], dtype=torch.float32) -> Tensor:
    """Uniform floats in [0, 1), 24 bits of resolution."""
    return (bits(k, shape) >> 8).to(dtype) * (1.0 / (1 << 24))


def normal(k: Tensor, shape: tuple[int, ...], dtype=torch.float32) -> Tensor:
    """Standard normal floats (Box-Muller on two independent uniform streams)."""
    u1 = uniform(fold(k, 1), shape, torch.float32)
    u2 = uniform(fold(k, 2), shape, torch.float32)
    r = torch.sqrt(-2.0 * torch.log1p(-u1))  # 1 - u1 in (0, 1]: log is finite
    return (r * torch.cos(2.0 * torch.pi * u2)).to(dtype)


def permutation(k: Tensor, n: Tensor | int, size: int) -> Tensor:
    """A random ordering of positions 0..size-1 whose first `n` entries are a
    permutation of 0..n-1 (the real examples); padding positions come last."""
    pos = torch.arange(size, device=k.device)
    score = uniform(k, (size,))
    score = torch.where(pos < n, score, 2.0 + pos.to(score.dtype))
    return torch.argsort(score)
