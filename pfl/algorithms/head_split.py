"""A model seen as encoder f and classifier head h, split by parameter-name prefix.

The head is the model's submodule named `head` (pfl.models.HEAD: every model's last
layer, by convention, not a setting), the map from the representation z to the logits; it
must be the last thing the model's forward applies (logits = head(z)). Features are read functionally: a forward pre-hook on the
head captures its input and stops the forward pass, so any model works
without a `features` method, in a loop or under vmap.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import functional_call

from pfl.config.errors import check
from pfl.models import HEAD
from pfl.task import Params, Task


class _Stop(Exception):
    def __init__(self, z: Tensor):
        super().__init__()
        self.z = z


class HeadSplit:
    def __init__(self, task: Task, prefix: str = HEAD):
        self.task = task
        self.prefix = prefix
        names = [n for n, _ in task.model.named_modules()]
        check(prefix in names and prefix != "", "model", type(task.model).__name__,
              f"a model whose last layer is a submodule named `{prefix}` (logits = {prefix}(z)); its submodules: "
              + ", ".join(n for n in names if n))
        self.module = task.model.get_submodule(prefix)

    def is_head(self, name: str) -> bool:
        return name.startswith(self.prefix + ".")

    def split(self, params: Params) -> tuple[Params, Params]:
        """(encoder params, head params), names unchanged."""
        enc = {k: v for k, v in params.items() if not self.is_head(k)}
        head = {k: v for k, v in params.items() if self.is_head(k)}
        return enc, head

    def features(self, encoder: Params, x: Tensor, key: Tensor | None, mask: Tensor | None = None) -> Tensor:
        """z = f(x): the head's input under the encoder parameters `encoder` (`mask`: the batch's real
        examples, for models that normalize over them)."""

        def stop(_module, args):
            raise _Stop(args[0])

        handle = self.module.register_forward_pre_hook(stop)
        try:
            self.task.logits(encoder, x, key, mask)
        except _Stop as s:
            return s.z
        finally:
            handle.remove()
        raise RuntimeError(f"{type(self.task.model).__name__}: the model's forward never called its `{self.prefix}`")

    def logits(self, head: Params, z: Tensor) -> Tensor:
        cut = len(self.prefix) + 1
        return functional_call(self.module, {k[cut:]: v for k, v in head.items()}, (z,))

    def loss(self, head: Params, z: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        return self.task.loss_from_logits(self.logits(head, z), y, mask)

    def head_only_grad(self, head: Params, z: Tensor, y: Tensor, mask: Tensor) -> Params:
        return torch.func.grad(self.loss)(head, z, y, mask)


def split_by_prefix(params: Params, prefix: str = HEAD) -> tuple[Params, Params]:
    """(body, head) of a parameter dict by name: the head is every `prefix.*` name.
    Server-side hooks (broadcast, bytes) use it; they see names, not the model."""
    cut = prefix + "."
    return ({k: v for k, v in params.items() if not k.startswith(cut)},
            {k: v for k, v in params.items() if k.startswith(cut)})


def check_head(task: Task) -> None:
    """ConfigError unless the task's model has a `head` submodule (HeadSplit's check)."""
    HeadSplit(task)


def linear_head_weight(params: Params, prefix: str = HEAD) -> Tensor:
    """The [classes, d] weight of a linear head `prefix` (server-side hooks that size extra tensors by it);
    ConfigError when the parameters have none."""
    name = prefix + ".weight"
    check(name in params and params[name].dim() == 2, "model", f"last parameters {list(params)[-2:]}",
          f"a model whose last layer is a linear `{prefix}` (logits = {prefix}(z))")
    return params[name]
