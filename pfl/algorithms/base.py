"""The one nested loop every algorithm instantiates (Jiang et al. 2019, Alg. 1).

    for each round:
        cohort   = sample clients
        u_i      = client_update(broadcast(θ), client_i)       # InnerLoop
        Δ        = aggregate({u_i})                              # default: Σ w_i Δ_i / Σ w_i
        θ, s     = server_update(θ, Δ, server optimizer, s)      # OuterLoop; default: .grad = Δ, step

An algorithm is a small class that overrides the hooks it needs; the defaults
are FedAvg's. Client hooks are pure functions of parameters, padded data and
a random key, so the backend can run them in a loop or vmapped over a cohort;
local steps run on `local.loop` (pfl.execution.StepLoop), never on a loop of
the algorithm's own. Algorithms know nothing of Lightning, Hydra or W&B: the
engine (pfl.engine.round.run_round) calls these hooks in this order.

Updates Δ are pseudo-gradients in parameter units: the server optimizer steps
with `.grad = Δ`, so server SGD with lr 1 applies Δ exactly (FedAvg's model
average) and momentum or Adam act on the same quantity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor
from torch.utils._pytree import tree_leaves, tree_map

from pfl import aggregate as agg
from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import ClientData, Split
from pfl.config.settings import Settings, integer, setting
from pfl.task import Params


class ClientUpdate(NamedTuple):
    delta: Params  # pseudo-gradient sent to the server
    weight: Tensor  # aggregation weight (scalar)
    metrics: dict[str, Tensor]  # scalars averaged over the cohort for logging
    state: dict = {}  # new per-client state (algorithms with client state; never mutated)
    extra: dict = {}  # further tensors the client sends up (e.g. a control variate); counted in bytes
    # the cohort rows' client ids (training-population indices): set by the engine before `aggregate` and
    # `server_update` (the server knows whom it addressed), never sent by a client nor counted in bytes
    ids: Tensor | tuple = ()


def nbytes(tensors) -> int:
    """Bytes of every tensor in a (nested) dict."""
    return sum(t.numel() * t.element_size() for t in tree_leaves(tensors) if isinstance(t, Tensor))


class Algorithm(Settings):
    """Base class: FedAvg's server and the default personalization; subclasses
    override `client_update` and whichever other hooks they need.

    Subclasses are dataclasses whose fields are `setting(...)`s (pfl.config.settings): the one
    place a setting's default and allowed values live. The algorithm's name is its
    config option (conf/algorithm/<name>.yaml), not a field."""

    config_path = "algorithm"
    #: personalization epochs this algorithm's results are read at, added to
    #: `personalization.epochs` (the local-only baseline's epochs, Acc_local)
    report_epochs: tuple[int, ...] = ()
    #: rounds this algorithm runs regardless of the config's `rounds` (None: the config's)
    rounds: int | None = None
    #: what one round is, for axis labels ("epoch" for the centralized baseline, whose round is an epoch)
    round_unit: str = "round"
    #: False for a non-federated baseline (the centralized one): W&B job_type "centralized"
    federated: bool = True
    #: True when Δ is the weighted mean of the updates and the server step reads Δ only (the default
    #: `aggregate` and `server_update`): the engine may then sum Δ as clients finish instead of stacking
    #: every client's update (pfl.engine.round). Derived for each subclass from whether it keeps both
    #: methods; a class may set it False itself, and may not set it True while overriding either.
    mean_of_updates: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        keeps = cls.aggregate is Algorithm.aggregate and cls.server_update is Algorithm.server_update
        declared = cls.__dict__.get("mean_of_updates")
        if declared is None:
            cls.mean_of_updates = keeps
        elif declared and not keeps:
            raise TypeError(f"{cls.__name__}: mean_of_updates=True, but it overrides aggregate or server_update")

    # -- what the server holds and sends ----------------------------------
    def init_global(self, model_params: Params) -> Params:
        """The server's parameters, from the model's initial ones."""
        return dict(model_params)

    def init_population(self, global_params: Params, num_clients: int) -> Params:
        """The server's parameters once the training population's size N is known (parameters held
        per training client on the server, e.g. client embeddings, are added here). Default: unchanged."""
        return global_params

    def init_server_state(self, global_params: Params, num_clients: int | None = None, rounds: int | None = None) -> dict:
        """Server-side state besides the parameters and the server optimizer
        (a control variate, a round counter); kept in checkpoints. The engine
        passes the training population's size N (SCAFFOLD's |S|/N) and the stage's
        number of rounds; both None where none is known (a bare run_round)."""
        return {}

    def stages(self, server_opt, rounds: int) -> list[tuple[str, "Algorithm", object, int]]:
        """The run of `rounds` rounds this algorithm stands for, as the engine's stages:
        [(name suffix, algorithm, partial server optimizer, rounds)]; `server_opt` is the
        configured one. Default: one stage, this algorithm. A method defined as a sequence
        of others (FedAvg-FT: FedAvg, then Reptile with another server optimizer) returns them."""
        return [("", self, server_opt, rounds)]

    def server_optimizer(self, param_groups: list[dict], configured):
        """The torch optimizer of the server; `configured` is the one `server_opt` names."""
        return configured(param_groups)

    def param_groups(self, names: list[str]) -> list[tuple[list[str], dict]]:
        """Server optimizer parameter groups: [(names, option overrides)]."""
        return [(names, {})]

    def broadcast(self, global_params: Params, key: Tensor, server_state: dict) -> Params:
        """What the server sends to the cohort this round (default: θ itself)."""
        return global_params

    def broadcast_each(self, global_params: Params, ids: Tensor) -> Params | None:
        """What the server sends each client of `ids` (training-population indices) on top of
        `broadcast`: a dict of stacked rows ([C, ...] each), or None (default: the same message for all).
        A pure function of the server's parameters. At a round, client i's `sent` is
        {**broadcast(...), **rows_i} (both dicts; counted in bytes down); at evaluation a training
        client's state row is {**state_i, **rows_i} (held-out clients keep state None)."""
        return None

    def model_params(self, global_params: Params) -> Params:
        """Model parameters to evaluate / personalize from the server's state."""
        return global_params

    def init_client_state(self, global_params: Params) -> dict | None:
        """One client's state kept across rounds (APFL's local model); None: stateless.
        The engine keeps one row per training client (checkpointed) and hands the
        training clients' rows to `personal_model` / `adapt` at evaluation."""
        return None

    def client_data(self, split: Split, ids: Tensor) -> tuple[ClientData, Tensor]:
        """The round's client data and the ids its rows stand for (default: the cohort, padded)."""
        return split.gather(ids), ids

    # -- the inner loop ------------------------------------------------------
    def client_update(self, local: LocalTrainer, sent: Params, data: ClientData, key: Tensor, state=None) -> ClientUpdate:
        raise NotImplementedError

    # -- the outer loop ------------------------------------------------------
    def aggregate(self, updates: ClientUpdate, server_state: dict) -> Params:
        """The server's Δ from the cohort's stacked updates: their weighted mean."""
        return agg.weighted_mean(updates.delta, updates.weight)

    def server_update(self, params: dict[str, Tensor], delta: Params, optimizer, server_state: dict,
                      updates: ClientUpdate) -> dict:
        """Apply Δ to the server's parameters (torch Parameters, in place) and
        return the new server state. Default: one optimizer step with `.grad = Δ`.
        The optimizer must be stepped once per round (Lightning counts rounds by it)."""
        for k, p in params.items():
            p.grad = delta[k].to(p.dtype) if k in delta else None  # no Δ: nothing sent back for it
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return server_state

    def server_metrics(self, params: Params, server_state: dict) -> dict[str, Tensor]:
        """Scalars of the server's side to log each round, as `server/<name>` (after the update)."""
        return {}

    def bytes_exchanged(self, sent: Params, updates: ClientUpdate) -> tuple[int, int]:
        """(down, up) bytes per client: what was broadcast and what one client sent back."""
        one = tree_map(lambda t: t[0], (updates.delta, updates.extra))  # the first client's share
        return nbytes(sent), nbytes(one)

    # -- personalization -----------------------------------------------------
    def personal_model(self, params: Params, state: dict | None = None) -> Params:
        """The model a client is evaluated with before any personalization epoch
        (k = 0). `state` is the client's own per-client state (training clients of
        algorithms with client state) or None (held-out clients, stateless
        algorithms). Default: the server's model, `model_params(params)`."""
        return self.model_params(params)

    def evaluate(self, local: LocalTrainer, model: Params, test: ClientData,
                 train: ClientData) -> tuple[Tensor, Tensor]:
        """(correct, counted) of a client's model on its test data, at every point of the personalization
        curve. `train` is the client's training data (for a prediction that reads it, e.g. a kNN memory).
        Default: the model's own predictions."""
        return local.evaluate(model, test)

    def adapt(self, local: LocalTrainer, params: Params, data: ClientData, key: Tensor, epochs: int, on_epoch,
              state: dict | None = None) -> None:
        """Personalize on a client's training data for `epochs` epochs, calling
        on_epoch(e, model_params_e) after each epoch (the personalization curve).

        `params` is the server's whole state (what `init_global` built, e.g. with
        Meta-SGD's learning rates); the model starts from `model_params(params)`.
        `state` is as in `personal_model` (None: the client has no state of its own).
        Default: local training of the whole model with the client optimizer."""
        local.train_by_epoch(self.model_params(params), data, key, epochs, on_epoch)


def epochs_setting(default: int = 1):
    """The `local_epochs` setting (E, epochs >= 1): LocalEpochs's, or a subclass's other default."""
    return setting(default, integer(ge=1))


@dataclass
class LocalEpochs:
    """Mixin of an algorithm whose clients train E epochs per round: `class FedX(LocalEpochs, Algorithm)`.
    The setting `local_epochs` (E, default 1; a class may redeclare it with `epochs_setting(10)`) and
    `steps(local)`, the step count per client that `local.train` takes: E * ceil(n_i / batch_size)."""

    local_epochs: int = epochs_setting()  # E: epochs of local training per round

    def steps(self, local: LocalTrainer):
        return local.epochs(self.local_epochs)


def model_delta(before: Params, after: Params) -> Params:
    return {k: before[k] - after[k] for k in before}


def examples_weight(data: ClientData) -> Tensor:
    return data.n.to(torch.float32)


def uniform_weight(data: ClientData) -> Tensor:
    return torch.ones((), device=data.n.device)
