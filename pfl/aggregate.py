"""How the server combines the cohort's updates: pure functions on stacked tensors.

Updates arrive stacked along a leading client axis ([C, ...] per parameter).
Algorithms pick one in `Algorithm.aggregate`; none re-derives a weighted mean.
"""

from __future__ import annotations

import torch
from torch import Tensor

Params = dict[str, Tensor]


def normalized(weights: Tensor) -> Tensor:
    """Weights divided by their sum (a zero sum gives zeros, not NaN)."""
    return weights / weights.sum().clamp(min=1e-12)


def weighted_sum(stacked: Params, weights: Tensor) -> Params:
    """Σ_i w_i x_i for every tensor of `stacked` ([C, ...] each)."""
    return {k: torch.einsum("c,c...->...", weights.to(v.dtype), v) for k, v in stacked.items()}


def weighted_mean(stacked: Params, weights: Tensor) -> Params:
    """Σ_i w_i x_i / Σ_i w_i for every tensor of `stacked` ([C, ...] each)."""
    return weighted_sum(stacked, normalized(weights))


def mean(stacked: Params) -> Params:
    """The uniform mean over clients."""
    return {k: v.mean(0) for k, v in stacked.items()}

