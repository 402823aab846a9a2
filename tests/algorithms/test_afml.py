"""AFML: the KL term, gradients through the reparameterization, backends, bytes."""

import math

import torch

from pfl import rng
from pfl.algorithms import AFML
from pfl.algorithms.afml import MU, NOISE_KEY, RHO, gaussian_kl, normal_like
from pfl.algorithms.local import LocalTrainer
from pfl.algorithms.meta import sample_batch, split_support_query
from pfl.data.synthetic import load_synthetic
from pfl.engine.round import client_updates
from pfl.execution import Backend
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.run import train
from pfl.task import Task
from tests.helpers import TINY_AFML, compose_cfg, tiny


def test_cmpx_closed_form_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu = {"a": torch.randn(40, generator=g, dtype=torch.float64), "b": torch.randn(3, 5, generator=g, dtype=torch.float64)}
    sigma = {k: 0.3 + torch.rand(v.shape, generator=g, dtype=torch.float64) for k, v in mu.items()}
    closed = gaussian_kl(mu, sigma)
    # E_q[log q(θ) - log p(θ)] per parameter, 20k samples
    n = 20000
    total = 0.0
    for k in mu:
        eps = torch.randn((n, *mu[k].shape), generator=g, dtype=torch.float64)
        theta = mu[k] + sigma[k] * eps
        log_q = -0.5 * eps**2 - torch.log(sigma[k]) - 0.5 * math.log(2 * math.pi)
        log_p = -0.5 * theta**2 - 0.5 * math.log(2 * math.pi)
        total = total + (log_q - log_p).mean(0).sum()
    mc = total / 55
    assert abs(float(closed) - float(mc)) < 0.01 * float(closed) + 1e-3
    # zero exactly at the prior
    assert abs(float(gaussian_kl({"a": torch.zeros(3)}, {"a": torch.ones(3)}))) < 1e-7


def _setup(dtype=torch.float32, **kw):
    torch.manual_seed(0)
    data = load_synthetic(num_clients=10, train_clients=6, min_examples=10, max_examples=40, dim=8, num_classes=4, seed=1)
    model = MLP(8, 4, [6]).to(dtype)
    local = LocalTrainer(Task(model), ClientSGD(batch_size=5))
    alg = AFML(init_sigma=0.05, **kw)
    state = {k: v.to(dtype) for k, v in alg.init_global(local.task.init_params()).items()}
    cohort = data.train.train.gather(torch.arange(4))
    cohort = cohort._replace(x=cohort.x.to(dtype))
    return alg, local, state, cohort


def test_gradients_reach_mu_and_rho_through_the_reparameterization():
    """With α = 0 the τ-gradient is the θt-gradient through θt = θu + softplus(ρ)·ε:
    ∂/∂θu = g, ∂/∂ρ = g · ε · sigmoid(ρ), and both are nonzero."""
    alg, local, state, cohort = _setup(alpha=0.0)
    sent = alg.broadcast(state, rng.key(9), {})
    client = type(cohort)(cohort.x[0], cohort.y[0], cohort.n[0])
    up = alg.client_update(local, sent, client, rng.key(1))
    enc = [k[len(MU):] for k in state if k.startswith(MU)]
    eps = normal_like(sent[NOISE_KEY], {k: state[MU + k] for k in enc})
    for k in enc:
        g_mu, g_rho = up.delta[MU + k], up.delta[RHO + k]
        assert g_mu.abs().sum() > 0 and g_rho.abs().sum() > 0
        torch.testing.assert_close(g_rho, g_mu * eps[k] * torch.sigmoid(state[RHO + k]), rtol=1e-4, atol=1e-7)
    assert all(up.delta[k].abs().sum() > 0 for k in state if k.startswith("head."))


def test_tau_gradient_matches_finite_differences():
    """The whole g_g = ∇_τ [L_q + α·L_TOFF] (second order through the inner step) in float64."""
    alg, local, state, cohort = _setup(torch.float64, alpha=0.5, beta=2.0, inner_steps=2)
    sent = alg.broadcast(state, rng.key(9), {})
    client = type(cohort)(cohort.x[1], cohort.y[1], cohort.n[1])
    key = rng.key(3)
    up = alg.client_update(local, sent, client, key)
    hs = alg.split(local.task)
    head = {k: v for k, v in state.items() if k.startswith("head.")}
    mu = {k[len(MU):]: v for k, v in state.items() if k.startswith(MU)}
    rho = {k[len(RHO):]: v for k, v in state.items() if k.startswith(RHO)}
    eps = normal_like(sent[NOISE_KEY], mu)
    client_eps = [normal_like(rng.fold(key, 100), mu)]
    support, query = split_support_query(client, rng.fold(key, 1), alg.support_fraction)
    batches = sample_batch(support, rng.fold(key, 2), None), sample_batch(query, rng.fold(key, 3), None)

    def total(m, r):
        l_q, (enc, cons, cmpx) = alg.losses(hs, head, m, r, eps, client_eps, *batches, rng.fold(key, 6))
        return float(l_q + alg.alpha * (enc + cons + alg.beta * cmpx))

    h = 1e-6
    name = "hidden.0.weight"
    for which, tree, prefix in (("mu", mu, MU), ("rho", rho, RHO)):
        for idx in [(0, 0), (3, 5), (5, 2)]:
            plus = {**tree, name: tree[name].clone()}
            minus = {**tree, name: tree[name].clone()}
            plus[name][idx] += h
            minus[name][idx] -= h
            args_p = (plus, rho) if which == "mu" else (mu, plus)
            args_m = (minus, rho) if which == "mu" else (mu, minus)
            fd = (total(*args_p) - total(*args_m)) / (2 * h)
            assert abs(fd - float(up.delta[prefix + name][idx])) < 1e-6 + 1e-4 * abs(fd), (which, idx)


def test_afml_vmap_equals_sequential():
    alg, local, state, cohort = _setup(mc_samples=2)
    sent = alg.broadcast(state, rng.key(9), {})
    keys = torch.stack([rng.key(0, i) for i in range(4)])

    a = client_updates(alg, local, Backend("vmap"), sent, cohort, keys)
    b = client_updates(alg, local, Backend("sequential"), sent, cohort, keys)
    for k in a.delta:
        torch.testing.assert_close(a.delta[k], b.delta[k], rtol=1e-5, atol=1e-6)


def _cfg(*overrides):
    return compose_cfg([*tiny(TINY_AFML), *overrides], tiny=False)


def test_afml_runs_under_both_backends_with_equal_results(tmp_path):
    runs = {b: train(_cfg("algorithm=afml", "zeta=0.4", f"engine.backend={b}"), tmp_path / b) for b in ("vmap", "sequential")}
    a, b = runs["vmap"], runs["sequential"]
    for k in ("1", "2"):
        assert abs(a["personalized_accuracy"][k] - b["personalized_accuracy"][k]) < 1e-6
    assert a["initial_accuracy"] == b["initial_accuracy"]
    # bytes: down = θu, ρ, head and the 8-byte noise seed; up = gradients for θu, ρ and the head
    enc = 4 * (60 * 64 + 64)
    head = 4 * (64 * 10 + 10)
    assert a["bytes"]["down_per_round"] == 4 * (2 * enc + head + 8)
    assert a["bytes"]["up_per_round"] == 4 * (2 * enc + head)
    assert a["flops_per_round"]["afml"] > 0 and a["flops_per_round"] == b["flops_per_round"]
