"""What a data set hands its model, declared once beside its loader.

A loader that reads files (a `root:` setting) declares its model-facing inputs with
`@declares(fn)`, where `fn(**some of the loader's settings) -> ModelInputs`. The loader
builds its data from that declaration (class count, input transform, the model's
constructor arguments) and checks the stored examples against it; tests read the same
declaration to make examples without the files (tests/models/test_contract.py).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from pfl.data.download import DataError


@dataclass(frozen=True)
class ModelInputs:
    x_shape: tuple[int, ...]  # one stored example
    x_high: int  # stored inputs are integers in [0, x_high) (pixels: 256; token ids: the vocabulary)
    y_shape: tuple[int, ...]  # one example's labels
    num_classes: int
    transform: Callable[[Tensor], Tensor] | None  # stored -> model input (on gathered batches)
    model_kwargs: dict = field(default_factory=dict)  # the model's constructor arguments from the data set
    x_dtype: torch.dtype = torch.uint8

    def info(self, **more) -> dict:
        """The data set's `info`, with the model's arguments."""
        return {**more, "model_kwargs": dict(self.model_kwargs)}

    def check(self, data):
        """`data` (a FederatedData), unless its stored examples differ from the declaration."""
        for pop in (data.train, data.heldout):
            for split in (pop.train, pop.test):
                got = (tuple(split.x.shape[1:]), split.x.dtype, tuple(split.y.shape[1:]))
                if got != (self.x_shape, self.x_dtype, self.y_shape):
                    raise DataError(f"data set {data.name}: stored examples are x {got[0]} {got[1]}, labels {got[2]}; "
                                    f"its loader declares x {self.x_shape} {self.x_dtype}, labels {self.y_shape}")
        return data

    def examples(self, n: int) -> Tensor:
        """n random stored examples of the declared shape, dtype and range."""
        return torch.randint(0, self.x_high, (n, *self.x_shape), dtype=self.x_dtype)


def declares(inputs: Callable[..., ModelInputs]):
    """Loader decorator: `loader.model_inputs(**settings)` is what the loader hands its model."""
    def wrap(loader):
        loader.model_inputs = inputs
        return loader

    return wrap


def declared_inputs(loader, settings: dict) -> ModelInputs | None:
    """The loader's declaration for these settings (those its declaration takes); None: it declares none."""
    fn = getattr(loader, "model_inputs", None)
    if fn is None:
        return None
    names = inspect.signature(fn).parameters
    return fn(**{k: v for k, v in settings.items() if k in names})
