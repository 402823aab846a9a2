"""The centralized ("datacenter") baseline of Jiang et al. 2019, Sec. 4.

Not a federated algorithm, but it runs on the same round as one: the round's
only "client" is the pool of every training client's examples
(`client_data`), one round is one epoch of Adam on shuffled minibatches of the
pool (so `rounds` is `epochs`), and the model is then personalized and
evaluated exactly like a federated one, with the default `adapt` (local
training with the personalization client optimizer).

Adam's moments live in the server state and travel with the parameters to the
pool and back (`extra`); the server applies the epoch's Δ = θ_start - θ_end
with SGD(lr 1), whatever `server_opt` says. Nothing is communicated (0 bytes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils._pytree import tree_map

from pfl import rng
from pfl.algorithms.base import Algorithm, ClientUpdate, model_delta
from pfl.data.federated import ClientData, Split
from pfl.optim import ClientAdam
from pfl.config.settings import integer, number, setting


@dataclass
class Centralized(Algorithm):
    epochs: int = setting(10, integer(ge=1))  # one logged "round" = one epoch
    lr: float = setting(0.001, number(gt=0))  # Adam on the pooled data
    batch_size: int = setting(20, integer(ge=1))
    beta1: float = setting(0.9, number(ge=0, lt=1))
    beta2: float = setting(0.999, number(ge=0, lt=1))
    eps: float = setting(1e-8, number(gt=0))
    weight_decay: float = setting(0.0, number(ge=0))

    round_unit = "epoch"
    federated = False

    @property
    def rounds(self) -> int:
        return self.epochs  # one round is one epoch of the pool

    def adam(self) -> ClientAdam:
        return ClientAdam(lr=self.lr, batch_size=self.batch_size, beta1=self.beta1, beta2=self.beta2, eps=self.eps)

    def init_server_state(self, global_params, num_clients=None, rounds=None):
        return {"adam": self.adam().init(dict(global_params))}

    def server_optimizer(self, param_groups, configured):
        return torch.optim.SGD(param_groups, lr=1.0)  # θ - Δ is the epoch's end point

    def broadcast(self, global_params, key, server_state):
        return {"params": global_params, "adam": server_state["adam"]}

    def client_data(self, split: Split, ids):
        """Every training client's examples, back to back, as one client."""
        total = torch.as_tensor([split.x.shape[0]], device=split.counts.device)
        return ClientData(split.x.unsqueeze(0), split.y.unsqueeze(0), total), ids[:1]

    def client_update(self, local, sent, data, key, state=None):
        adam = self.adam()
        n = data.x.shape[0]
        order = rng.permutation(key, data.n, n)  # this epoch's shuffle of the pool, drawn once

        def step(carry, b):
            params, opt_state, total = carry
            pos = b * self.batch_size + torch.arange(min(self.batch_size, n), device=data.x.device)
            mask = pos < n
            idx = order[pos.clamp(max=n - 1)]
            g, loss = torch.func.grad_and_value(local.task.loss)(params, data.x[idx], data.y[idx], mask,
                                                                 rng.fold(key, 1000 + b))
            if self.weight_decay:  # L2 as in torch.optim.Adam
                g = {k: v + self.weight_decay * params[k] for k, v in g.items()}
            new, new_state = adam.update(params, g, opt_state)
            return new, new_state, total + loss.detach()

        batches = -(-n // self.batch_size)
        start = (sent["params"], sent["adam"], torch.zeros((), device=data.x.device))
        params, opt_state, total = local.steps_loop(data)(start, step, batches)
        return ClientUpdate(model_delta(sent["params"], params), torch.ones((), device=data.x.device),
                            {"loss": total / batches}, extra={"adam": opt_state})

    def server_update(self, params, delta, optimizer, server_state, updates):
        super().server_update(params, delta, optimizer, server_state, updates)
        return {"adam": tree_map(lambda t: t[0], updates.extra["adam"])}  # the pool's (only) row

    def bytes_exchanged(self, sent, updates):
        return 0, 0  # the data are pooled: nothing is sent
