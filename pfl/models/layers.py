"""Layers whose randomness comes from an explicit key (see pfl.rng)."""

from __future__ import annotations

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
