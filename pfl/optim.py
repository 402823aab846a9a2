"""Client optimizers as pure functions (usable under vmap).

`init(params) -> state`, `update(params, grads, state) -> (params, state)`.
State is a dict of tensors so it stacks along the client axis like parameters.
The batch size is a client setting and lives here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pfl.config.settings import Settings, integer, number, setting

Params = dict[str, torch.Tensor]


@dataclass
class ClientSGD(Settings):
    lr: float = setting(0.02, number(gt=0))  # the first paper's client lr
    batch_size: int = setting(20, integer(ge=1))
    momentum: float = setting(0.0, number(ge=0, lt=1))
    weight_decay: float = setting(0.0, number(ge=0))
    config_path = "client_opt"

    def init(self, params: Params) -> dict:
        if self.momentum == 0:
            return {}
        return {"m": {k: torch.zeros_like(v) for k, v in params.items()}}

    def update(self, params: Params, grads: Params, state: dict) -> tuple[Params, dict]:
        if self.weight_decay:
            grads = {k: g + self.weight_decay * params[k] for k, g in grads.items()}
        if self.momentum:
            m = {k: self.momentum * state["m"][k] + g for k, g in grads.items()}
            return {k: params[k] - self.lr * m[k] for k in params}, {"m": m}
        return {k: params[k] - self.lr * g for k, g in grads.items()}, state


@dataclass
class ClientAdam(Settings):
    lr: float = setting(0.001, number(gt=0))
    batch_size: int = setting(20, integer(ge=1))
    beta1: float = setting(0.9, number(ge=0, lt=1))
    beta2: float = setting(0.999, number(ge=0, lt=1))
    eps: float = setting(1e-8, number(gt=0))
    config_path = "client_opt"

    def init(self, params: Params) -> dict:
        zeros = lambda: {k: torch.zeros_like(v) for k, v in params.items()}  # noqa: E731
        first = next(iter(params.values()))
        return {"m": zeros(), "v": zeros(), "t": torch.zeros((), dtype=first.dtype, device=first.device)}

    def update(self, params: Params, grads: Params, state: dict) -> tuple[Params, dict]:
        t = state["t"] + 1
        m = {k: self.beta1 * state["m"][k] + (1 - self.beta1) * g for k, g in grads.items()}
        v = {k: self.beta2 * state["v"][k] + (1 - self.beta2) * g * g for k, g in grads.items()}
        c1 = 1 - self.beta1**t
        c2 = 1 - self.beta2**t
        new = {k: params[k] - self.lr * (m[k] / c1) / (_sqrt(v[k] / c2) + self.eps) for k in params}
        return new, {"m": m, "v": v, "t": t}


def _sqrt(v: torch.Tensor) -> torch.Tensor:
    """sqrt with a zero (not NaN) derivative at 0, so that MAML can differentiate
    through Adam steps where a gradient entry is exactly 0 (dead units)."""
    pos = v > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, v, torch.ones_like(v))), torch.zeros_like(v))
