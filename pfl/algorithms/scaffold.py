"""SCAFFOLD (Karimireddy, Kale, Mohri, Reddi, Stich, Suresh 2020, "SCAFFOLD:
Stochastic controlled averaging for federated learning", ICML), Algorithm 1
with option II.

The server holds x and a control variate c (server state); every client i
holds its own control variate c_i (per-client state, zero at the start,
checkpointed). In a round the server sends (x, c); client i starts y = x and
takes K_i local steps of the client optimizer on the corrected gradient

    y ← y - η_l (g_i(y) - c_i + c)

(K_i = E epochs of minibatches), then (option II)

    c_i⁺ = c_i - c + (x - y) / (K_i η_l)

and sends Δy = y - x and Δc = c_i⁺ - c_i. The server applies

    x ← x + η_g · mean_i Δy            (server SGD, lr η_g = server_opt.lr, on Δ = x - y)
    c ← c + (|S| / N) · mean_i Δc       (N: the training population's size)

with uniform means over the cohort S, as in Algorithm 1. The correction is
added to the gradient as a linear term <c - c_i, y> of the local loss, so any
client optimizer runs it; option II's (x - y)/(K η_l) is exact for plain SGD
(`client_opt=sgd` without momentum, η_l = client_opt.lr). With c = c_i = 0
(the first round) a client's Δ is FedAvg(E)'s.

Bytes: both directions carry two model-sized tensors (x and c down, Δy and
Δc up), twice FedAvg's. Personalization: the default (local epochs of the
global model, for training and held-out clients alike: c_i is a correction
of the local steps, not a personal model).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pfl.algorithms.base import Algorithm, ClientUpdate, LocalEpochs, model_delta, uniform_weight
from pfl.execution import StepLoop


@dataclass
class SCAFFOLD(LocalEpochs, Algorithm):  # E: local steps K_i = E · ceil(n_i / batch_size)
    def init_server_state(self, global_params, num_clients=None, rounds=None):
        # N = None (no population known, e.g. a bare run_round): |S|/N is taken as 1
        return {"c": {k: torch.zeros_like(v) for k, v in global_params.items()}, "num_clients": num_clients}

    def init_client_state(self, global_params):
        return {k: torch.zeros_like(v) for k, v in global_params.items()}  # c_i

    def broadcast(self, global_params, key, server_state):
        return {"params": global_params, "c": server_state["c"]}

    def client_update(self, local, sent, data, key, state=None):
        x, c = sent["params"], sent["c"]
        c_i = state
        shift = {k: c[k] - c_i[k] for k in x}

        def loss(params, xb, yb, mask, k):  # ∇ = g_i(y) - c_i + c
            return local.task.loss(params, xb, yb, mask, k) + sum((shift[n] * params[n]).sum() for n in params)

        steps = self.steps(local)
        y, value = local.train(x, data, key, steps, loss=loss)
        delta = model_delta(x, y)  # x - y
        k_lr = StepLoop.per_client(steps, data.n).clamp(min=1).to(next(iter(x.values())).dtype) * local.opt.lr
        new_c_i = {k: c_i[k] - c[k] + delta[k] / k_lr for k in x}
        dc = {k: new_c_i[k] - c_i[k] for k in x}
        return ClientUpdate(delta, uniform_weight(data), {"loss": value}, new_c_i, {"dc": dc})

    def server_update(self, params, delta, optimizer, server_state, updates):
        super().server_update(params, delta, optimizer, server_state, updates)
        cohort = next(iter(updates.extra["dc"].values())).shape[0]
        frac = cohort / (server_state["num_clients"] or cohort)
        c = {k: v + frac * updates.extra["dc"][k].mean(0) for k, v in server_state["c"].items()}
        return {"c": c, "num_clients": server_state["num_clients"]}
