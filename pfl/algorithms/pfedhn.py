"""pFedHN (Shamsian, Navon, Fetaya, Chechik 2021, "Personalized federated learning
using hypernetworks", ICML), Algorithm 1.

The server holds a hypernetwork h(·; φ) and one embedding v_i per training
client (the server's parameters: checkpointed, resumed, the same on every rank).
Client i's model is generated on the server, θ_i = h(v_i; φ), and sent to it
alone (`broadcast_each`); the client takes K steps of the client optimizer
from θ_i to θ̃_i and sends back Δθ_i = θ_i - θ̃_i. The server's update is the
chain rule through the generator (Alg. 1, lines 8-9):

    ∇_φ = (∂θ_i/∂φ)^T Δθ_i,      ∇_{v_i} = (∂θ_i/∂v_i)^T Δθ_i,

averaged uniformly over the round's cohort (the paper samples one client per
step; a cohort of C averages C such steps' gradients), then one step of the
hypernetwork's optimizer. h is an MLP on v (Linear(e, H), then `n_hidden` × [ReLU,
Linear(H, H)]) with one linear head per target tensor: θ_name = W_name · a + b_name.

A hypernetwork that ignores the embedding (every MLP weight and bias and every
head weight 0) stays so forever, and then θ_i = b for every client and
b ← b - α · mean_i Δθ_i: one global model trained by Reptile(K) with server SGD
(lr α), which tests/algorithms/test_pfedhn.py checks.

Defaults (the paper, Sec. 5 / App., as we read it): K = 50 inner steps; H = 100, 3 hidden
layers; embedding dimension 1 + N/4 (N training clients; the authors' code); the hypernetwork's optimizer
SGD(lr 0.01, momentum 0.9, weight decay 1e-3) — it is part of this algorithm,
so `server_opt` is not used. The paper's inner optimizer (SGD lr 5e-3, momentum
0.9) is `client_opt`. Our choice (the paper fixes none): the heads start at
W = 0 and b = the model's initialization, so every client's first model is the
model's own initial one; the MLP and embeddings start as torch's Linear / N(0, 1),
drawn from a generator seeded by the model's initial parameters (the run's seed).

Size: the heads hold H × (the model's parameter count) numbers (H = 100: a hundred models,
plus the optimizer's momentum), so pFedHN suits small target models (the paper's LeNet-size
CNNs), not the larger CNNs here.

Bytes: θ_i down, Δθ_i up (one model each way; φ never travels). Personalization:
a training client starts from its θ_i = h(v_i) and fine-tunes it locally; a
held-out client gets a new embedding, started at the mean of the training
clients' and trained by the client optimizer with φ frozen (the paper's
generalization to novel clients, Sec. 6), its curve the models h(v_k).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pfl.aggregate import normalized
from pfl.algorithms.base import Algorithm, ClientUpdate, model_delta, uniform_weight
from pfl.config.errors import check
from pfl.config.settings import integer, number, optional, setting
from pfl.task import Params

EMBED, MLP, OUT = "hn.embed", "hn.mlp.", "hn.out."


def _generator(params: Params) -> torch.Generator:
    """A generator seeded by a digest of `params` (deterministic given the run's seed)."""
    digest = torch.cat([v.detach().flatten()[:16].double().cpu() for v in params.values()])
    return torch.Generator().manual_seed(int((digest.abs().sum() * 1e6).item()) % (2 ** 62))


def _linear(fan_in: int, fan_out: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    bound = fan_in ** -0.5  # torch's nn.Linear initialization
    weight = (torch.rand(fan_out, fan_in, generator=g) * 2 - 1) * bound
    return weight, (torch.rand(fan_out, generator=g) * 2 - 1) * bound


@dataclass
class PFedHN(Algorithm):
    local_steps: int = setting(50, integer(ge=1))  # K: inner steps per round
    embed_dim: int | None = setting(None, optional(integer(ge=1)))  # e (null: 1 + N // 4)
    hidden: int = setting(100, integer(ge=1))  # H
    n_hidden: int = setting(3, integer(ge=0))  # hidden Linear(H, H) layers after the first
    hn_lr: float = setting(0.01, number(gt=0))  # α
    hn_momentum: float = setting(0.9, number(ge=0, lt=1))
    hn_weight_decay: float = setting(0.001, number(ge=0))

    def init_global(self, model_params):
        g = _generator(model_params)
        out = {}
        for i in range(1 + self.n_hidden):  # the first layer's input size is e: set in init_population
            out[f"{MLP}{i}.weight"], out[f"{MLP}{i}.bias"] = _linear(self.hidden, self.hidden, g)
        for name, v in model_params.items():
            out[f"{OUT}{name}.w"] = torch.zeros(*v.shape, self.hidden, dtype=v.dtype)
            out[f"{OUT}{name}.b"] = v.detach().clone()
        return out

    def init_population(self, global_params, num_clients):
        e = self.embed_dim or 1 + num_clients // 4
        g = _generator(global_params)
        w, b = _linear(e, self.hidden, g)
        embed = torch.randn(num_clients, e, generator=g)
        return {EMBED: embed, **global_params, f"{MLP}0.weight": w, f"{MLP}0.bias": b}

    def server_optimizer(self, param_groups, configured):
        return torch.optim.SGD(param_groups, lr=self.hn_lr, momentum=self.hn_momentum,
                               weight_decay=self.hn_weight_decay)

    @staticmethod
    def targets(params: Params) -> list[str]:
        return [k[len(OUT):-2] for k in params if k.startswith(OUT) and k.endswith(".b")]

    def generate(self, params: Params, v: Tensor) -> Params:
        """θ = h(v; φ) for embeddings v [C, e]: {target name: [C, *shape]}."""
        a = v
        for i in range(1 + self.n_hidden):
            a = a @ params[f"{MLP}{i}.weight"].T + params[f"{MLP}{i}.bias"]
            a = a.relu() if i < self.n_hidden else a
        return {n: torch.einsum("...h,ch->c...", params[f"{OUT}{n}.w"], a) + params[f"{OUT}{n}.b"]
                for n in self.targets(params)}

    def broadcast(self, global_params, key, server_state):
        return {}  # nothing common: each client gets its own θ_i

    def broadcast_each(self, global_params, ids):
        check(ids is not None, "ids", None, "the cohort's client ids (pFedHN generates one model per client)")
        return self.generate(global_params, global_params[EMBED][ids])

    def client_update(self, local, sent, data, key, state=None):
        new, loss = local.train(sent, data, key, self.local_steps)
        return ClientUpdate(model_delta(sent, new), uniform_weight(data), {"loss": loss})

    def aggregate(self, updates, server_state):
        return {}  # the update goes through the hypernetwork: server_update

    def server_update(self, params, delta, optimizer, server_state, updates):
        check(isinstance(updates.ids, Tensor), "ids", None, "the cohort's client ids (set by the engine)")
        w = normalized(updates.weight)
        with torch.enable_grad():
            theta = self.generate(params, params[EMBED][updates.ids])
            surrogate = sum(torch.einsum("c,c...->", w.to(t.dtype), t * updates.delta[n].detach())
                            for n, t in theta.items())
            grads = torch.autograd.grad(surrogate, list(params.values()), allow_unused=True)
        for p, g in zip(params.values(), grads):
            p.grad = torch.zeros_like(p) if g is None else g
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return server_state

    def _mean_embedding(self, params: Params) -> Tensor:
        return params[EMBED].mean(0, keepdim=True)

    def model_params(self, global_params):
        """The model a new client starts from: h(mean embedding)."""
        return {k: v[0] for k, v in self.generate(global_params, self._mean_embedding(global_params)).items()}

    def personal_model(self, params, state=None):
        return self.model_params(params) if state is None else {n: state[n] for n in self.targets(params)}

    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        if state is not None:  # a training client: its θ_i, fine-tuned
            local.train_by_epoch(self.personal_model(params, state), data, key, epochs, on_epoch)
            return
        hn = {k: v for k, v in params.items() if k != EMBED}

        def model(v):
            return {k: t[0] for k, t in self.generate(hn, v["v"]).items()}

        def loss(v, x, y, mask, k):  # φ frozen: only the new client's embedding is trained
            return local.task.loss(model(v), x, y, mask, k)

        local.train_by_epoch({"v": self._mean_embedding(params)}, data, key, epochs, lambda e, v: on_epoch(e, model(v)),
                             loss=loss)
