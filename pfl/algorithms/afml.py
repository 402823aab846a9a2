"""AFML, from "Towards generalizable personalized federated learning with adaptive
local adaptation" (anonymous authors; cited by title), Algorithm 1.

The model is split into an encoder f and a classifier head h
(`head`: parameter-name prefix, see head_split.py). The encoder's weights are
Gaussian, τ = (θu, θσ) with θσ = softplus(ρ) so that ρ is unconstrained and
σ > 0; the head θ̂ is deterministic. The server holds {head, θu, ρ}.

One round, per client c of the cohort:

    θt   = θu + σ ⊙ ε,  ε ~ N(0, I) drawn ONCE per round (shared by the cohort)
    S, Q = the client's examples split into support (fraction P) and query
    φ    = θ̂ - η ∇_θ̂ CE(h_θ̂(f_θt(S)))                (inner step(s) on the head)
    L_q  = CE(h_φ(f_θt(Q)))
    g_c  = ∇_θ̂ L_q                                     (second order through φ)
    g_g  = ∇_τ [L_q + α · L_TOFF],  L_TOFF = L_ENC + L_CONS + β · L_CMPX
    server: θ̂ -= η1 · mean(g_c),  τ -= η2 · mean(g_g)

Choices where the paper leaves room (also in experiments/afml/README.md):

- Exchange. The server sends (θu, ρ), the head and the round's 8-byte noise
  seed; every client rebuilds the same θt = θu + σ⊙ε(seed) and returns the
  gradients for (θu, ρ) and the head. The client needs σ anyway for L_ENC,
  L_CONS and L_CMPX, so sending θt alone would not suffice. Bytes are counted
  from these tensors: down 2|f| + |h| + 8, up 2|f| + |h| per client.
- L_ENC: query cross-entropy of the adapted head under `mc_samples` encoder
  draws with the client's own noise (a Monte Carlo estimate of the expected
  log-likelihood under τ, beside L_q's shared draw θt).
- L_CONS: the stochastic representation p(z|x) is taken as the Gaussian with
  the per-dimension mean and variance of z over the 1 + mc_samples encoder
  draws (θt and the client's), read through an additive N(0, `z_noise`)
  channel so that its KL to N(0, I) stays finite when σ → 0; the KL is
  averaged over representation dimensions and counted query positions.
- L_CMPX: the closed-form KL(N(θu, σ²) || N(0, I)), averaged over the encoder
  parameters (so β does not scale with the model size).
- The scalings: total = L_q + α·(L_ENC + L_CONS) + α·β·L_CMPX (the issue's
  form; α(L_ENC + L_CONS) + β·L_CMPX is the same with β' = αβ).
- Inner step(s): full-batch gradient descent on the support set (or a random
  minibatch of `batch_size`), lr η; g_c is exact second-order MAML through
  the head's inner step (the head is small).
- Server learning rates η1 (head) and η2 (τ) are the lr of two parameter
  groups of the server optimizer (Δ is the raw gradient, so use server_opt=sgd
  for the paper's update); clients are weighted equally (mean of gradients).
- Personalization: the encoder at its mean θu (no sampling), then each
  personalization "epoch" is `inner_steps` full-batch gradient steps with lr η
  on the head, using all the client's training data (Pers.1 is the adaptation
  AFML trains for; Pers.5 repeats it five times).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import grad, vjp
from torch.nn.functional import softplus

from pfl import rng
from pfl.algorithms.base import Algorithm, ClientUpdate, uniform_weight
from pfl.algorithms.head_split import HeadSplit
from pfl.algorithms.meta import sample_batch, sgd, split_support_query
from pfl.config_errors import check, is_int, is_number
from pfl.task import Params

MU = "enc_mu."
RHO = "enc_rho."
NOISE_KEY = "afml_noise_seed"


def gaussian_kl(mu: Params, sigma: Params) -> Tensor:
    """KL(N(μ, σ²) || N(0, 1)) averaged over all parameters (closed form)."""
    total = sum((0.5 * (s * s + m * m - 1.0) - torch.log(s)).sum() for m, s in zip(mu.values(), sigma.values()))
    return total / sum(m.numel() for m in mu.values())


def representation_kl(z: Tensor, weight: Tensor, noise: float) -> Tensor:
    """KL(N(mean_s z, var_s z + noise) || N(0, I)) per position, averaged over
    dimensions and over positions with `weight` (z: [samples, *positions, dim])."""
    m = z.mean(0)
    v = z.var(0, unbiased=True) + noise
    kl = (0.5 * (v + m * m - 1.0 - torch.log(v))).mean(-1)
    return (kl * weight).sum() / weight.sum().clamp(min=1.0)


def normal_like(key: Tensor, like: Params) -> Params:
    return {k: rng.normal(rng.fold(key, i), tuple(v.shape), v.dtype) for i, (k, v) in enumerate(like.items())}


@dataclass
class AFML(Algorithm):
    head: str = "head"  # prefix of the head's parameter names
    support_fraction: float = 0.8  # P
    inner_lr: float = 0.1  # η
    inner_steps: int = 1
    head_lr: float = 0.1  # η1 (server)
    encoder_lr: float = 0.1  # η2 (server)
    alpha: float = 0.01  # weight of L_TOFF
    beta: float = 0.01  # weight of L_CMPX inside L_TOFF
    init_sigma: float = 0.001  # initial encoder weight std
    mc_samples: int = 1  # client noise draws for L_ENC / L_CONS
    z_noise: float = 0.01  # variance of the additive channel in L_CONS
    batch_size: int | None = None  # support/query minibatch (null: the whole sets)
    name: str = "afml"

    def __post_init__(self):
        check(isinstance(self.head, str) and self.head != "", "algorithm.head", self.head, "a submodule name, e.g. head")
        check(is_number(self.support_fraction) and 0 < self.support_fraction < 1, "algorithm.support_fraction",
              self.support_fraction, "a number in (0, 1)")
        for key in ("inner_lr", "head_lr", "encoder_lr", "init_sigma", "z_noise"):
            v = getattr(self, key)
            check(is_number(v) and v > 0, f"algorithm.{key}", v, "a number > 0")
        for key in ("alpha", "beta"):
            v = getattr(self, key)
            check(is_number(v) and v >= 0, f"algorithm.{key}", v, "a number >= 0")
        check(is_int(self.inner_steps) and self.inner_steps >= 1, "algorithm.inner_steps", self.inner_steps, "an integer >= 1")
        check(is_int(self.mc_samples) and self.mc_samples >= 1, "algorithm.mc_samples", self.mc_samples, "an integer >= 1")
        check(self.batch_size is None or (is_int(self.batch_size) and self.batch_size >= 1), "algorithm.batch_size",
              self.batch_size, "null or an integer >= 1")
        self._splits: dict[int, HeadSplit] = {}

    # -- server state ----------------------------------------------------------
    def _is_head(self, name: str) -> bool:
        return name.startswith(self.head + ".")

    def init_global(self, model_params: Params) -> Params:
        head = {k: v for k, v in model_params.items() if self._is_head(k)}
        enc = {k: v for k, v in model_params.items() if not self._is_head(k)}
        check(bool(head) and bool(enc), "algorithm.head", self.head,
              "a prefix naming the model's head (some but not all parameters), e.g. " + ", ".join(list(model_params)[-2:]))
        rho = math.log(math.expm1(self.init_sigma))  # softplus^-1(σ0)
        return {**head, **{MU + k: v for k, v in enc.items()}, **{RHO + k: torch.full_like(v, rho) for k, v in enc.items()}}

    def broadcast(self, global_params: Params, key: Tensor, server_state: dict) -> Params:
        return {**global_params, NOISE_KEY: key}

    def model_params(self, global_params: Params) -> Params:
        """The deterministic model: encoder at its mean θu, and the head."""
        enc = {k[len(MU):]: v for k, v in global_params.items() if k.startswith(MU)}
        head = {k: v for k, v in global_params.items() if self._is_head(k)}
        return {**enc, **head}

    def param_groups(self, names: list[str]) -> list[tuple[list[str], dict]]:
        head = [n for n in names if self._is_head(n)]
        enc = [n for n in names if n.startswith(MU) or n.startswith(RHO)]
        return [(head, {"lr": self.head_lr}), (enc, {"lr": self.encoder_lr})]

    def split(self, task) -> HeadSplit:
        if id(task) not in self._splits:
            self._splits[id(task)] = HeadSplit(task, self.head)
        return self._splits[id(task)]

    # -- one client --------------------------------------------------------------
    def inner(self, hs: HeadSplit, head: Params, z: Tensor, y: Tensor, mask: Tensor) -> Params:
        for _ in range(self.inner_steps):
            head = sgd(head, grad(hs.loss)(head, z, y, mask), self.inner_lr)
        return head

    def losses(self, hs: HeadSplit, head: Params, mu: Params, rho: Params, eps: Params, client_eps: list[Params],
               support, query, key: Tensor):
        """(L_q, (L_ENC, L_CONS, L_CMPX)) as functions of (head, θu, ρ)."""
        xs, ys, ms = support
        xq, yq, mq = query
        sigma = {k: softplus(r) for k, r in rho.items()}
        theta_t = {k: mu[k] + sigma[k] * eps[k] for k in mu}
        phi = self.inner(hs, head, hs.features(theta_t, xs, rng.fold(key, 1)), ys, ms)
        z_t = hs.features(theta_t, xq, rng.fold(key, 2))
        l_q = hs.loss(phi, z_t, yq, mq)
        zs, l_enc = [z_t], 0.0
        for s, e in enumerate(client_eps):
            z = hs.features({k: mu[k] + sigma[k] * e[k] for k in mu}, xq, rng.fold(key, 10 + s))
            l_enc = l_enc + hs.loss(phi, z, yq, mq)
            zs.append(z)
        weight = hs.task._counted(yq, mq).to(z_t.dtype)
        l_cons = representation_kl(torch.stack(zs), weight, self.z_noise)
        return l_q, (l_enc / len(client_eps), l_cons, gaussian_kl(mu, sigma))

    def client_update(self, local, params, data, key, state=None):
        hs = self.split(local.task)
        head = {k: v for k, v in params.items() if self._is_head(k)}
        mu = {k[len(MU):]: v for k, v in params.items() if k.startswith(MU)}
        rho = {k[len(RHO):]: v for k, v in params.items() if k.startswith(RHO)}
        eps = normal_like(params[NOISE_KEY], mu)  # the round's shared draw: θt is the same for the cohort
        client_eps = [normal_like(rng.fold(key, 100 + s), mu) for s in range(self.mc_samples)]
        support, query = split_support_query(data, rng.fold(key, 1), self.support_fraction)
        xs, ys, ms = sample_batch(support, rng.fold(key, 2), self.batch_size)
        xq, yq, mq = sample_batch(query, rng.fold(key, 3), self.batch_size)
        xs, xq = local.augment(support, xs, rng.fold(key, 4)), local.augment(query, xq, rng.fold(key, 5))

        def objective(h, m, r):
            return self.losses(hs, h, m, r, eps, client_eps, (xs, ys, ms), (xq, yq, mq), rng.fold(key, 6))

        (l_q, (l_enc, l_cons, l_cmpx)), pull = vjp(objective, head, mu, rho)
        one, zero = torch.ones_like(l_q), torch.zeros_like(l_q)
        g_head = pull((one, (zero, zero, zero)))[0]  # g_c: query loss only
        a = self.alpha * one
        _, g_mu, g_rho = pull((one, (a, a, a * self.beta)))  # g_g: L_q + α·L_TOFF
        delta = {**g_head, **{MU + k: v for k, v in g_mu.items()}, **{RHO + k: v for k, v in g_rho.items()}}
        metrics = {"loss": l_q.detach(), "l_enc": l_enc.detach(), "l_cons": l_cons.detach(), "l_cmpx": l_cmpx.detach()}
        return ClientUpdate(delta, uniform_weight(data), metrics)

    # -- personalization -----------------------------------------------------------
    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        hs = self.split(local.task)
        enc, head = hs.split(self.model_params(params))
        x, y, mask = local.full_batch(data)
        z = hs.features(enc, x, None)  # encoder at θu, fixed during personalization
        for e in range(epochs):
            head = self.inner(hs, head, z, y, mask)
            on_epoch(e + 1, {**enc, **head})
