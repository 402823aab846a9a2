"""APFL (Deng, Kamani, Mahdavi 2020, "Adaptive personalized federated
learning"; the AFML paper's plots call it FedMAML).

Each client keeps, across rounds, a local model v and a mixing weight
a ∈ [0, 1]; its personalized model is the mixture v̄ = a·v + (1-a)·w of v
and the global model w. Every local step on a minibatch updates

    w ← w - η ∇L(w)
    v ← v - η ∇_v L(v̄)          = v - η a ∇L(v̄)
    a ← a - η ∇_a L(v̄)          = a - η <∇L(v̄), v - w>

all with the client optimizer. It is written as ordinary local training of
the joint parameters {w, v, a} on L(w) + L(a·v + (1-a)·sg(w)) (sg: stop
gradient, so w only sees its own loss), which gives exactly the three
updates above. a is projected onto [0, 1] at the end of each round (inside
a round the mixture uses a clamped to [0, 1]). The server receives
Δ = w_start - w_end (parameter units, weighted by examples); v and a never
leave the client: they are per-client state (`init_client_state`),
stored in the checkpoint, so a resumed run continues them exactly.

Personalization: a training client starts from its own v and a (its
per-client state; k = 0 evaluates its mixture a·v + (1-a)·w); a held-out
client, which has no state, starts with v at the current global model and a
at `mix_init` (a fresh client's state). Then k epochs of the same local
updates; the mixture v̄ is evaluated after each epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pfl.algorithms.base import Algorithm, ClientUpdate, LocalEpochs, examples_weight, model_delta
from pfl.config.settings import number, setting
from pfl.task import Params

W, V, MIX = "w.", "v.", "apfl_mix"


def mixture(joint: Params) -> Params:
    a = joint[MIX].clamp(0.0, 1.0)
    return {k[len(V):]: a * v + (1 - a) * joint[W + k[len(V):]] for k, v in joint.items() if k.startswith(V)}


@dataclass
class APFL(LocalEpochs, Algorithm):
    mix_init: float = setting(0.5, number(ge=0, le=1))  # a at the start of a client's life

    def init_client_state(self, global_params: Params) -> dict:
        first = next(iter(global_params.values()))
        return {**{V + k: v.detach().clone() for k, v in global_params.items()},
                MIX: torch.tensor(float(self.mix_init), dtype=first.dtype, device=first.device)}

    def joint_loss(self, task):
        def loss(joint, x, y, mask, key):
            w = {k[len(W):]: v for k, v in joint.items() if k.startswith(W)}
            frozen = {W + k: v.detach() for k, v in w.items()}
            mixed = mixture({**joint, **frozen})
            return task.loss(w, x, y, mask, key) + task.loss(mixed, x, y, mask, key)
        return loss

    def client_update(self, local, params, data, key, state=None):
        joint = {**{W + k: v for k, v in params.items()}, **state}
        steps = self.steps(local)
        new, loss = local.train(joint, data, key, steps, loss=self.joint_loss(local.task))
        w = {k[len(W):]: v for k, v in new.items() if k.startswith(W)}
        new_state = {k: v for k, v in new.items() if k.startswith(V)}
        new_state[MIX] = new[MIX].clamp(0.0, 1.0)
        return ClientUpdate(model_delta(params, w), examples_weight(data), {"loss": loss, "mix": new_state[MIX]}, new_state)

    def personal_model(self, params, state=None):
        model = self.model_params(params)
        if state is None:
            return model
        return mixture({**{W + k: v for k, v in model.items()}, **state})

    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        model = self.model_params(params)
        own = state if state is not None else self.init_client_state(model)
        joint = {**{W + k: v for k, v in model.items()}, **own}
        local.train_by_epoch(joint, data, key, epochs, lambda e, p: on_epoch(e, mixture(p)),
                             loss=self.joint_loss(local.task))
