"""A model seen as pure functions of a parameter dict (torch.func.functional_call).

Algorithms never touch nn.Module state: they call `Task.loss` and
`Task.correct` with explicit parameters, so the same code runs per client in a
loop or vectorized over a cohort with vmap.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

Params = dict[str, Tensor]

#: trainer.precision (Lightning's names) -> the dtype the client computation autocasts to (None: float32)
AUTOCAST = {None: None, "32": None, "32-true": None, "bf16": torch.bfloat16, "bf16-mixed": torch.bfloat16,
            "16": torch.float16, "16-mixed": torch.float16}


class Task:
    """Classification (labels [B]) or sequence labelling (labels [B, T]).

    Positions whose label equals `ignore_index` never count (sequence padding).
    Losses and accuracies are means over counted positions of real examples.
    """

    def __init__(
        self,
        model: nn.Module,
        input_transform: Callable[[Tensor], Tensor] | None = None,
        ignore_index: int | None = None,
        augment: Callable[[Tensor, Tensor], Tensor] | None = None,
        precision: str | None = None,
    ):
        """`precision` (trainer.precision): "bf16-mixed" / "16-mixed" run every forward (and so its
        backward) under torch.autocast to that dtype on the data's device; parameters, gradients,
        optimizer states and losses stay float32. The autocast lives here, at the one place every
        client computation passes, so it holds under vmap and the loop, in training and in
        evaluation, and outside Lightning (run_round, the benchmark) too."""
        self.model = model
        self.input_transform = input_transform
        self.ignore_index = ignore_index
        self.augment = augment  # training-time augmentation of stored inputs (x, key) -> x
        self.buffers = {k: v for k, v in model.named_buffers()}
        #: models whose forward takes `mask` (batch normalization over real examples) get the batch's mask
        self.takes_mask = "mask" in inspect.signature(model.forward).parameters
        if str(precision) not in {str(k) for k in AUTOCAST}:
            raise ValueError(f"trainer.precision={precision!r}: expected one of 32-true, bf16-mixed, 16-mixed")
        self.autocast = AUTOCAST[None if precision is None else str(precision)]

    def init_params(self) -> Params:
        return {k: v.detach().clone() for k, v in self.model.named_parameters()}

    def logits(self, params: Params, x: Tensor, key: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """The model's logits; `mask` (the batch's real examples) reaches models that take one."""
        if self.input_transform is not None:
            x = self.input_transform(x)
        kwargs = {"key": key, "mask": mask} if self.takes_mask else {"key": key}
        if self.autocast is None:
            return functional_call(self.model, (params, self.buffers), (x,), kwargs)
        with torch.autocast(device_type=x.device.type, dtype=self.autocast):
            out = functional_call(self.model, (params, self.buffers), (x,), kwargs)
        return out.float()  # losses and argmax in float32

    def _counted(self, y: Tensor, mask: Tensor) -> Tensor:
        m = mask.reshape(mask.shape + (1,) * (y.dim() - mask.dim())).expand_as(y)
        if self.ignore_index is not None:
            m = m & (y != self.ignore_index)
        return m

    def per_position_loss(self, logits: Tensor, y: Tensor) -> Tensor:
        # logits [B, (T,) classes] -> loss [B, (T)]
        target = y if self.ignore_index is None else y.clamp(min=0)
        return nn.functional.cross_entropy(logits.movedim(-1, 1), target, reduction="none")

    def loss(self, params: Params, x: Tensor, y: Tensor, mask: Tensor, key: Tensor | None = None) -> Tensor:
        """Mean cross-entropy over counted positions of the examples where mask is True."""
        return self.loss_from_logits(self.logits(params, x, key, mask), y, mask)

    def loss_from_logits(self, logits: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        """`loss` for logits computed elsewhere (e.g. a head applied to features)."""
        m = self._counted(y, mask).to(torch.float32)
        return (self.per_position_loss(logits, y) * m).sum() / m.sum().clamp(min=1.0)

    def correct(self, params: Params, x: Tensor, y: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(number correct, number counted) over the masked examples, no dropout."""
        m = self._counted(y, mask)
        pred = self.logits(params, x, None, mask).argmax(-1)
        return ((pred == y) & m).sum(), m.sum()
