"""The one nested loop every algorithm instantiates (Jiang et al. 2019, Alg. 1).

    for each round:
        cohort   = sample clients
        Δ_i, w_i = client_update(θ, client_i)      # InnerLoop
        θ        = server_opt.step(grad = Σ w_i Δ_i / Σ w_i)   # OuterLoop

An algorithm is a small class: it says how many local steps a client takes
(`num_steps`), what a client computes (`client_update`, a pure function of
parameters, padded data and a random key), and how a client personalizes
(`adapt`). The engine owns everything else: cohorts, vectorization,
aggregation, server optimizers, checkpoints, logging. Algorithms know nothing
of Lightning, Hydra or W&B.

Updates Δ are pseudo-gradients in parameter units: the server optimizer steps
with `.grad = Δ`, so server SGD with lr 1 applies Δ exactly (FedAvg's model
average) and momentum or Adam act on the same quantity.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import ClientData
from pfl.settings import Settings
from pfl.task import Params


class ClientUpdate(NamedTuple):
    delta: Params  # pseudo-gradient sent to the server
    weight: Tensor  # aggregation weight (scalar)
    metrics: dict[str, Tensor]  # scalars averaged over the cohort for logging
    state: dict = {}  # new per-client state (algorithms with client state; never mutated)


class Algorithm(Settings):
    """Base class; subclasses override `num_steps` and `client_update`.

    Subclasses are dataclasses whose fields are `setting(...)`s (pfl.settings): the one
    place a setting's default and allowed values live. The algorithm's name is its
    config option (conf/algorithm/<name>.yaml), not a field."""

    config_path = "algorithm"
    #: per-client state kept across rounds (APFL's local model), else False
    has_client_state: bool = False
    #: personalization epochs this algorithm's results are read at, added to
    #: `personalization.epochs` (FedAvg-FT's K fine-tuning epochs)
    report_epochs: tuple[int, ...] = ()

    # -- what the server holds and sends ----------------------------------
    def init_global(self, model_params: Params) -> Params:
        """The server's parameters, from the model's initial ones."""
        return dict(model_params)

    def broadcast(self, global_params: Params, key: Tensor) -> Params:
        """What the server sends to the cohort this round (default: θ itself)."""
        return global_params

    def model_params(self, global_params: Params) -> Params:
        """Model parameters to evaluate / personalize from the server's state."""
        return global_params

    def param_groups(self, names: list[str]) -> list[tuple[list[str], dict]]:
        """Server optimizer parameter groups: [(names, option overrides)]."""
        return [(names, {})]

    def init_client_state(self, global_params: Params) -> dict | None:
        return None

    # -- the inner loop ------------------------------------------------------
    def num_steps(self, local: LocalTrainer, n: Tensor) -> Tensor:
        """Local steps for clients with `n` examples (works on a vector of n)."""
        raise NotImplementedError

    def client_update(
        self, local: LocalTrainer, params: Params, data: ClientData, key: Tensor, max_steps: int, state=None
    ) -> ClientUpdate:
        raise NotImplementedError

    # -- personalization -----------------------------------------------------
    def adapt(self, local: LocalTrainer, params: Params, data: ClientData, key: Tensor, epochs: int,
              max_batches: int, on_epoch) -> None:
        """Personalize on a client's training data for `epochs` epochs, calling
        on_epoch(e, model_params_e) after each epoch (the personalization curve).

        `params` is the server's whole state (what `init_global` built, e.g. with
        Meta-SGD's learning rates); the model starts from `model_params(params)`.
        Default: local training of the whole model with the client optimizer."""
        local.train_by_epoch(self.model_params(params), data, key, epochs, max_batches, on_epoch)


def model_delta(before: Params, after: Params) -> Params:
    return {k: before[k] - after[k] for k in before}


def examples_weight(data: ClientData) -> Tensor:
    return data.n.to(torch.float32)


def uniform_weight(data: ClientData) -> Tensor:
    return torch.ones((), device=data.n.device)
