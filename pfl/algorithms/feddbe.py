"""FedDBE (Zhang, Hua, Cao, Wang, Song, Xue, Ma, Guan 2023, "Eliminating domain bias for federated
learning in representation space", NeurIPS), Sec. 4: FedAvg + DBE.

The model is a feature extractor f (the body) and a head h (`pfl.models`' `head`). DBE adds

- a personalized representation bias memory (PRBM) z̄ᵖ_i ∈ R^d per client (per-client state, 0 at
  the start), trained with the model: the head sees z + z̄ᵖ_i, ŷ = h(f(x) + z̄ᵖ_i);
- mean regularization (MR): the client's running mean of its representations, per minibatch
  r ← (1 - μ) r + μ · mean_batch f(x) (r = 0 at the start of each round, carried without gradient
  between steps), is pulled to the global consensus z̄ᵍ:
      L_i = CE(h(f(x) + z̄ᵖ_i), y) + κ · mean_d ½ (r - z̄ᵍ)².

z̄ᵍ is fixed once, in an initialization period in which clients train without DBE and the server
averages their running means (weighted by example count). Here that period is round 1: its cohort
trains plain FedAvg (no PRBM, no MR), the server sets z̄ᵍ from that cohort's means (the reference
code runs a separate pass over every client whose training it then discards) and keeps it fixed.
Every client update and aggregation is FedAvg's (E epochs of the client optimizer on θ and z̄ᵖ_i;
Δ = θ - θ_i averaged by example count).

Defaults: κ = 50 and μ = 1 (the authors' released command for FMNIST; the paper tunes κ per data set).
Bytes: down the model, z̄ᵍ (d floats) and the consensus flag (1 byte); up Δ and the client's running
mean (d floats), sent every round though the server reads it only in round 1 (one message shape per
run). Evaluation: h(z + z̄ᵖ) of a linear head is the head with bias b + W z̄ᵖ (this module requires
an nn.Linear head with a bias); held-out clients have z̄ᵖ = 0 (the global model). Personalization:
k epochs of local training of that whole model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import grad_and_value

from pfl import rng
from pfl.algorithms.base import Algorithm, ClientUpdate, LocalEpochs, examples_weight, model_delta
from pfl.algorithms.head_split import HeadSplit, linear_head_weight
from pfl.config.errors import check
from pfl.execution import StepLoop
from pfl.config.settings import number, setting

PRBM = "dbe.prbm"


def masked_mean(z, mask):
    """Mean of the representations z [B, (T,) d] over the real examples of the batch."""
    m = mask.reshape(mask.shape + (1,) * (z.dim() - 1 - mask.dim())).expand(z.shape[:-1]).to(z.dtype)
    return (z * m.unsqueeze(-1)).reshape(-1, z.shape[-1]).sum(0) / m.sum().clamp(min=1.0)


@dataclass
class FedDBE(LocalEpochs, Algorithm):
    kappa: float = setting(50.0, number(ge=0))  # κ: weight of the mean regularization
    momentum: float = setting(1.0, number(gt=0, le=1))  # μ: weight of the batch in the running mean

    def init_server_state(self, global_params, num_clients=None, rounds=None):
        w = linear_head_weight(global_params)
        return {"consensus": w.new_zeros(w.shape[-1]), "ready": torch.zeros((), dtype=torch.bool)}

    def init_client_state(self, global_params):
        w = linear_head_weight(global_params)
        return {PRBM: w.new_zeros(w.shape[-1])}

    def broadcast(self, global_params, key, server_state):
        return {**global_params, "dbe.consensus": server_state["consensus"], "dbe.ready": server_state["ready"]}

    def split(self, task) -> HeadSplit:
        hs = HeadSplit(task)
        check(isinstance(hs.module, nn.Linear) and hs.module.bias is not None, "model", type(task.model).__name__,
              "a model whose head is one nn.Linear with a bias (FedDBE folds z̄ᵖ into the head's bias)")
        return hs

    def loss(self, task, consensus, ready):
        """(L_i, r_new) of one minibatch from the running mean r (Sec. 4's CE + κ·MR)."""
        hs = self.split(task)

        def loss(p, running, x, y, mask, key):
            body, head = hs.split({k: v for k, v in p.items() if k != PRBM})
            z = hs.features(body, x, key, mask)
            running = (1 - self.momentum) * running + self.momentum * masked_mean(z, mask)
            ce = task.loss_from_logits(hs.logits(head, z + p[PRBM] * ready), y, mask)
            mr = 0.5 * ((running - consensus) ** 2).mean()
            return ce + self.kappa * mr * ready, running.detach()

        return loss

    def client_update(self, local, sent, data, key, state=None):
        model = {k: v for k, v in sent.items() if not k.startswith("dbe.")}
        ready = sent["dbe.ready"].to(model["head.weight"].dtype)
        loss_fn = self.loss(local.task, sent["dbe.consensus"], ready)
        params = {**model, PRBM: state[PRBM]}

        def step(carry, s):
            p, opt, running, total = carry
            s = torch.as_tensor(s, device=data.x.device)
            x, y, mask = local.batch(data, key, s)
            g, (value, running) = grad_and_value(loss_fn, has_aux=True)(p, running, x, y, mask, rng.fold(key, 1000 + s))
            p, opt = local.opt.update(p, g, opt)
            return p, opt, running, total + value.detach()

        steps = self.steps(local)
        zero = torch.zeros((), device=data.x.device)
        start = (params, local.opt.init(params), torch.zeros_like(state[PRBM]), zero)
        new, _, running, total = local.steps_loop(data)(start, step, steps, data.n)
        metrics = {"loss": total / StepLoop.per_client(steps, data.n).clamp(min=1)}
        trained = {k: new[k] for k in model}
        return ClientUpdate(model_delta(model, trained), examples_weight(data), metrics, {PRBM: new[PRBM]},
                            {"mean": running})

    def server_update(self, params, delta, optimizer, server_state, updates):
        state = super().server_update(params, delta, optimizer, server_state, updates)
        w = updates.weight / updates.weight.sum()
        mean = (updates.extra["mean"] * w.unsqueeze(-1)).sum(0)
        fixed = server_state["ready"]
        return {"consensus": torch.where(fixed, server_state["consensus"], mean.to(server_state["consensus"])),
                "ready": torch.ones_like(fixed)}

    def personal_model(self, params, state=None):
        model = self.model_params(params)
        if state is None:
            return model
        return {**model, "head.bias": model["head.bias"] + model["head.weight"] @ state[PRBM]}
