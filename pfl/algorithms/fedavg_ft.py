"""FedAvg-FT, the AFML paper's first baseline: Jiang et al. 2019's method, FedAvg
followed by Reptile(K) fine-tuning ("Personalized FedAvg", their Alg. 2 / §5).

    rounds 1 .. R - R_ft        FedAvg(E): E local epochs, clients weighted by examples
    the last R_ft rounds        Reptile(K): K local steps, clients weighted equally

then Pers.1 / Pers.5 like every other method: k epochs of the client optimizer
on the client's training data (Jiang's Alg. 2 step 3, the default `adapt`).

Why K is Reptile's K: the AFML paper's Fig. 1 names "FedAvg-FT, K=3 / K=10"
beside "Pers=5" and "E", so K is neither the personalization epochs nor FedAvg's
local epochs; in the cited method the fine-tuning stage is Reptile(K) with K
local steps (Jiang et al., Tables 2-3: K ∈ {1, 10}). The earlier reading (plain
FedAvg read at Pers.K) compared FedAvg-FT at 10 epochs against the others at 5.

The switch is counted in the server state (a round counter, checkpointed); the
stage's length comes from the engine (`init_server_state(rounds=...)`). One
server optimizer serves both stages (the AFML paper names none; Jiang et al. use
Adam for the fine-tuning stage: run their two-stage preset,
experiment=personalized_fedavg, for that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from pfl.algorithms.base import Algorithm, ClientUpdate, examples_weight, model_delta, uniform_weight
from pfl.config.settings import integer, number, optional, setting


@dataclass
class FedAvgFT(Algorithm):
    local_epochs: int = setting(1, integer(ge=1))  # E of the FedAvg stage
    finetune_steps: int = setting(10, integer(ge=1))  # K: Reptile(K)'s local steps
    finetune_rounds: Optional[int] = setting(None, optional(integer(ge=0)))  # R_ft (null: finetune_fraction of R)
    finetune_fraction: float = setting(0.2, number(ge=0, le=1))  # R_ft / R when finetune_rounds is null

    def init_server_state(self, global_params, num_clients=None, rounds=None) -> dict:
        total = int(rounds or 0)
        ft = self.finetune_rounds if self.finetune_rounds is not None else round(self.finetune_fraction * total)
        return {"round": 0, "switch": max(total - min(ft, total), 0)}

    def broadcast(self, global_params, key, server_state):
        return {"params": global_params, "finetune": server_state["round"] >= server_state["switch"]}

    def client_update(self, local, sent, data, key, state=None):
        params = sent["params"]
        if sent["finetune"]:  # Reptile(K)
            new, loss = local.train(params, data, key, self.finetune_steps)
            return ClientUpdate(model_delta(params, new), uniform_weight(data), {"loss": loss})
        new, loss = local.train(params, data, key, lambda n: self.local_epochs * local.batches_per_epoch(n))
        return ClientUpdate(model_delta(params, new), examples_weight(data), {"loss": loss})

    def server_update(self, params, delta, optimizer, server_state, updates):
        state = super().server_update(params, delta, optimizer, server_state, updates)
        return {**state, "round": state["round"] + 1}

    def server_metrics(self, params, server_state):
        return {"finetuning": torch.tensor(float(server_state["round"] > server_state["switch"]))}
