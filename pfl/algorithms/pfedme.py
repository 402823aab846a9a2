"""pFedMe (Dinh, Tran, Nguyen 2020, "Personalized federated learning with
Moreau envelopes", NeurIPS), Algorithm 1.

Client i starts its local model at w = w^t and takes R local rounds (here
E epochs of minibatches). On each minibatch D it first solves the
Moreau-envelope inner problem, Eq. (7),

    θ̃ ≈ argmin_θ  f_i(θ; D) + (λ/2)·‖θ - w‖²

with K steps of gradient descent (lr `personal_lr`; θ is warm-started from
the previous minibatch's θ̃ within a round and from w^t at a round's start),
then moves the local model, Eq. (8),

    w ← w - η λ (w - θ̃)        (η = client_opt.lr)

and returns Δ = w^t - w_R. The server mixes, Eq. (10),

    w^{t+1} = (1 - β) w^t + β · mean_i w_R,i

which is SGD with lr β on the uniform mean of Δ: the server optimizer is
SGD(lr=β) whatever `server_opt` says. The client's last θ̃ (its personalized
model) is per-client state (checkpointed; w^0 at the start).

Only w travels (bytes as FedAvg). Personalization: each epoch runs the same
local rounds over the client's training data (inner problem, then Eq. (8)) and
evaluates θ̃; the local model starts at the current global model, θ at the
client's own θ̃ (training clients; k = 0 evaluates it) or at the global model
(held-out clients, which have no θ̃).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import grad_and_value

from pfl import rng
from pfl.algorithms.base import Algorithm, ClientUpdate, LocalEpochs, model_delta, uniform_weight
from pfl.config.settings import integer, number, setting


@dataclass
class PFedMe(LocalEpochs, Algorithm):  # R = E · ceil(n / batch_size) local rounds, one minibatch each
    lam: float = setting(15.0, number(gt=0))  # λ: Moreau-envelope regularization
    inner_steps: int = setting(5, integer(ge=1))  # K: gradient steps on the inner problem per minibatch
    personal_lr: float = setting(0.01, number(gt=0))  # lr of those K steps
    beta: float = setting(1.0, number(gt=0))  # β: server mixing (w ← (1-β)w + β·mean w_i)

    def server_optimizer(self, param_groups, configured):
        return torch.optim.SGD(param_groups, lr=self.beta)  # Eq. (10)

    def init_client_state(self, global_params):
        return {k: v.detach().clone() for k, v in global_params.items()}  # θ̃ = w^0

    def solve(self, task, theta, w, batch, key):
        """θ̃: K gradient steps on f(θ; D) + (λ/2)‖θ - w‖² from θ (Eq. 7)."""
        x, y, mask = batch

        def envelope(th):
            prox = sum(((th[n] - w[n]) ** 2).sum() for n in th)
            return task.loss(th, x, y, mask, key) + 0.5 * self.lam * prox

        value = None
        for _ in range(self.inner_steps):
            g, value = grad_and_value(envelope)(theta)
            theta = {k: theta[k] - self.personal_lr * g[k] for k in theta}
        return theta, value.detach()

    def local_round(self, local, data, key, carry, s):
        """One local round on minibatch s: the inner problem, then Eq. (8)."""
        w, theta, total = carry
        s = torch.as_tensor(s, device=data.x.device)
        theta, value = self.solve(local.task, theta, w, local.batch(data, key, s), rng.fold(key, 1000 + s))
        lr = local.opt.lr
        w = {k: w[k] - lr * self.lam * (w[k] - theta[k]) for k in w}
        return w, theta, total + value

    def client_update(self, local, sent, data, key, state=None):
        steps = self.steps(local)
        start = (sent, dict(sent), torch.zeros((), device=data.x.device))
        w, theta, total = local.steps_loop(data)(start, lambda c, s: self.local_round(local, data, key, c, s),
                                                 steps, data.n)
        n_steps = (self.local_epochs * local.batches_per_epoch(data.n)).clamp(min=1)
        return ClientUpdate(model_delta(sent, w), uniform_weight(data), {"loss": total / n_steps}, theta)

    def personal_model(self, params, state=None):
        return self.model_params(params) if state is None else dict(state)

    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        w = self.model_params(params)
        carry = (w, self.personal_model(params, state), torch.zeros((), device=data.x.device))
        loop, nb = local.steps_loop(data), local.batches_per_epoch(data.n)
        for e in range(epochs):
            carry = loop(carry, lambda c, b, _e=e: self.local_round(local, data, key, c, _e * nb + b),
                         local.batches_per_epoch, data.n)
            on_epoch(e + 1, carry[1])
