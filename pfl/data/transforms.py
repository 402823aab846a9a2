"""Input transforms: compact stored inputs -> model inputs, on the device.

They run on gathered batches inside the model call (under vmap too), so the
data set stays on the device in its compact dtype (uint8 pixels and tokens).
Plain module-level functions, so they pickle with the data.
"""

from __future__ import annotations

import torch
from torch import Tensor

# CIFAR-100 training-set channel statistics (of pixels scaled to [0, 1])
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


def unit_pixels(x: Tensor) -> Tensor:
    """uint8 grey pixels -> floats in [0, 1] (EMNIST keeps TFF's 1.0 = background)."""
    return x.to(torch.float32) / 255.0  # division: k/255 exactly as the source floats


def inverted_unit_pixels(x: Tensor) -> Tensor:
    """uint8 grey pixels -> 1 - x/255: 0.0 = background, as in MNIST (dataset.invert=true)."""
    return 1.0 - x.to(torch.float32) / 255.0


def cifar_pixels(x: Tensor) -> Tensor:
    """uint8 [..., 3, 32, 32] -> per-channel standardized floats."""
    mean = torch.tensor(CIFAR100_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(CIFAR100_STD, device=x.device).view(3, 1, 1)
    return (x.to(torch.float32) / 255.0 - mean) / std


def token_ids(x: Tensor) -> Tensor:
    """uint8 token ids -> int64 (embedding indices)."""
    return x.to(torch.int64)
