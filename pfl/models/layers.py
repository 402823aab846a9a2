"""Layers that keep a model a pure function of its inputs: dropout driven by an explicit key
(see pfl.rng), batch normalization over the real (unmasked) examples of the batch."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pfl import rng


class KeyedDropout(nn.Module):
    """Dropout whose mask is a pure function of (key, salt).

    Active only when a key is passed: training code passes one, evaluation
    passes None. The same key gives the same mask under vmap and in a loop.
    """

    def __init__(self, p: float, salt: int):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p must be in [0, 1), got {p}")
        self.p = p
        self.salt = salt

    def forward(self, x: Tensor, key: Tensor | None = None) -> Tensor:
        if key is None or self.p == 0.0:
            return x
        keep = rng.uniform(rng.fold(key, self.salt), tuple(x.shape), x.dtype) >= self.p
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, salt={self.salt}"


class MaskedBatchNorm(nn.Module):
    """Batch normalization (Ioffe & Szegedy 2015) over the real examples of the batch it is given.

    y = γ (x - μ_B) / sqrt(σ²_B + eps) + β, with μ_B and σ²_B (biased) over the examples where `mask`
    is True (all when None) and every position after the channel axis. No running averages: pfl's
    models are pure functions of their parameters (pfl.task), so training and evaluation both use the
    statistics of the batch (in evaluation, a client's whole test set). The mask keeps padding rows
    out of the statistics, so a client's result does not depend on whom it is padded with.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        m = torch.ones(x.shape[0], dtype=x.dtype, device=x.device) if mask is None else mask.to(x.dtype)
        m = m.reshape((-1,) + (1,) * (x.dim() - 1)).expand_as(x)
        dims = [0, *range(2, x.dim())]
        count = m.sum(dims).clamp(min=1.0)
        mean = (x * m).sum(dims) / count
        var = (((x - mean.reshape(shape)) ** 2) * m).sum(dims) / count
        x = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + self.eps)
        return x * self.weight.reshape(shape) + self.bias.reshape(shape)
