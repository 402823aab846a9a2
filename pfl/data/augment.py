"""Training-time augmentation for the ζ-permuted clients (the second paper).

Under ζ < 1 a (1-ζ) fraction of the clients relabels its classes; where the
modality allows, those clients also augment their samples (images: random
crop with zero padding and horizontal flip). The mechanism is generic:

- a data set names an augmentation `FederatedData.augment(x, key) -> x` that
  works on a minibatch of stored inputs (any dtype, e.g. uint8 pixels);
- `flag_permuted_clients` copies `info["permuted"]` (one bool per client and
  population, written by the loaders) into the training splits (`Split.aug`),
  so the flag travels with every gathered client (`ClientData.aug`);
- `LocalTrainer.batch` augments the minibatch of flagged clients with a key
  derived from the client's key and the step. Every draw is a function of
  that key, so the vmapped and the sequential backends augment identically
  and a resumed run repeats itself. Test data is never augmented.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from pfl import rng
from pfl.data.federated import FederatedData


@dataclass
class RandomCropFlip:
    """Random crop of the original size from the image zero-padded by `pad`
    pixels on each side, then a horizontal flip with probability 1/2.

    Works on [B, ..., H, W] (channels first or grey), one draw per example,
    as one gather (no Python control flow on values: legal under vmap).
    """

    pad: int = 4
    flip: bool = True
    fill: float = 0.0  # value of the padding, in the stored dtype's units (255: EMNIST's white background)

    def __call__(self, x: Tensor, key: Tensor) -> Tensor:
        b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        u = rng.uniform(key, (b, 3))
        span = 2 * self.pad + 1
        oy = (u[:, 0] * span).to(torch.int64).clamp(max=span - 1) - self.pad  # shift in [-pad, pad]
        ox = (u[:, 1] * span).to(torch.int64).clamp(max=span - 1) - self.pad
        cols = torch.arange(w, device=x.device)
        if self.flip:
            flipped = (u[:, 2] < 0.5).unsqueeze(1)
            cols = torch.where(flipped, (w - 1) - cols, cols)  # [B, W] or [W]
        rows = oy.unsqueeze(1) + torch.arange(h, device=x.device)  # [B, H] source rows
        cols = ox.unsqueeze(1) + cols  # [B, W] source columns
        valid = ((rows >= 0) & (rows < h)).unsqueeze(2) & ((cols >= 0) & (cols < w)).unsqueeze(1)  # [B, H, W]
        mid = x.dim() - 3  # channel dims between batch and H, W
        shape_r = (b,) + (1,) * mid + (h, 1)
        shape_c = (b,) + (1,) * mid + (1, w)
        out = torch.gather(x, -2, rows.clamp(0, h - 1).reshape(shape_r).expand(x.shape))
        out = torch.gather(out, -1, cols.clamp(0, w - 1).reshape(shape_c).expand(x.shape))
        valid = valid.reshape((b,) + (1,) * mid + (h, w))
        return torch.where(valid, out, torch.full_like(out, self.fill))


#: handwriting (EMNIST, FEMNIST; stored uint8 with 255 = background): shifts of up to
#: 2 pixels, no flip (a mirrored character is another character)
CHARACTER_AUGMENT = RandomCropFlip(pad=2, flip=False, fill=255)


def flag_permuted_clients(data: FederatedData) -> FederatedData:
    """Mark the ζ-permuted clients' training examples for augmentation.

    A no-op when the data set has no augmentation or records no permuted
    clients (`info["permuted"] = {"train": bool[clients], "heldout": ...}`).
    """
    permuted = data.info.get("permuted")
    if data.augment is None or not permuted:
        return data
    pops = {}
    for name in ("train", "heldout"):
        pop = getattr(data, name)
        flags = torch.as_tensor(permuted[name], dtype=torch.bool)
        if flags.shape != (len(pop),):
            raise ValueError(f"info['permuted']['{name}'] has shape {tuple(flags.shape)}, expected ({len(pop)},)")
        pops[name] = replace(pop, train=replace(pop.train, aug=flags))
    return replace(data, **pops)
