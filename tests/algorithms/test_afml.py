"""AFML (eq. 4, Alg. 1): each term by hand, gradients through the reparameterization
at the server, the reduction to head-only MAML, backends, bytes, σ that learns."""

import math

import pytest
import torch
from torch.func import grad

from pfl import rng
from pfl.algorithms import AFML
from pfl.algorithms.base import ClientUpdate
from pfl.algorithms.afml import ENC, LOG_SIGMA, MU, channel_kl, gaussian_kl, normal_like
from pfl.algorithms.local import LocalTrainer
from pfl.algorithms.meta import sample_batch, sgd, split_support_query
from pfl.data.federated import ClientData
from pfl.data.synthetic import load_synthetic
from pfl.data.synthetic_mixture import load_synthetic_mixture
from pfl.engine.round import Server, client_updates, run_round
from pfl.execution import Backend
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.run import train
from pfl.task import Task
from tests.helpers import TINY_AFML, compose_cfg, tiny


def test_cmpx_closed_form_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu = {"a": torch.randn(40, generator=g, dtype=torch.float64), "b": torch.randn(3, 5, generator=g, dtype=torch.float64)}
    log_s = {k: torch.log(0.3 + torch.rand(v.shape, generator=g, dtype=torch.float64)) for k, v in mu.items()}
    closed = gaussian_kl(mu, log_s)
    n, total = 20000, 0.0  # E_q[log q(θ) - log p(θ)], summed over the 55 parameters
    for k in mu:
        eps = torch.randn((n, *mu[k].shape), generator=g, dtype=torch.float64)
        theta = mu[k] + torch.exp(log_s[k]) * eps
        log_q = -0.5 * eps**2 - log_s[k] - 0.5 * math.log(2 * math.pi)
        log_p = -0.5 * theta**2 - 0.5 * math.log(2 * math.pi)
        total = total + (log_q - log_p).mean(0).sum()
    assert abs(float(closed) - float(total)) < 0.01 * float(closed) + 1e-2
    assert abs(float(gaussian_kl({"a": torch.zeros(3)}, {"a": torch.zeros(3)}))) < 1e-7  # zero at the prior


def test_one_parameter_terms_by_hand():
    # L_CMPX of one weight N(0.5, 0.2²): 0.5 (0.04 + 0.25 - 1) - log 0.2
    kl = gaussian_kl({"w": torch.tensor([0.5])}, {"w": torch.log(torch.tensor([0.2]))})
    assert abs(float(kl) - (0.5 * (0.04 + 0.25 - 1) - math.log(0.2))) < 1e-6
    # L_CONS of a 1-d representation z = 2 through the channel N(z, 0.1): 0.5 (0.1 + 4 - 1 - log 0.1)
    cons = channel_kl(torch.tensor([[2.0], [0.0]]), torch.tensor([1.0, 0.0]), 0.1)  # the second position is masked
    assert abs(float(cons) - 0.5 * (0.1 + 4 - 1 - math.log(0.1))) < 1e-6


def _setup(dtype=torch.float32, **kw):
    torch.manual_seed(0)
    data = load_synthetic(num_clients=10, train_clients=6, min_examples=10, max_examples=40, dim=8, num_classes=4, seed=1)
    model = MLP(8, 4, [6]).to(dtype)
    local = LocalTrainer(Task(model), ClientSGD(batch_size=5))
    alg = AFML(init_sigma=0.05, **kw)
    glob = {k: v.to(dtype) for k, v in alg.init_global(local.task.init_params()).items()}
    cohort = data.train.train.gather(torch.arange(4))
    cohort = cohort._replace(x=cohort.x.to(dtype))
    return alg, local, glob, cohort


def _client(cohort, i):
    return ClientData(cohort.x[i], cohort.y[i], cohort.n[i])


def test_broadcast_is_one_reparameterized_draw_and_bytes_are_alg1s():
    """Down θt and θ̂ (|f| + |h|); up g_c and g_g = ∇τ (|h| + 2|f|), or g_c and ∇θt (|h| + |f|) compact."""
    alg, local, glob, cohort = _setup()
    state = alg.init_server_state(glob)
    sent = alg.broadcast(glob, rng.key(9), state)
    mu = {k[len(MU):]: v for k, v in glob.items() if k.startswith(MU)}
    eps = normal_like(rng.key(9), mu)
    for k in mu:  # θt = θu + σ ε with σ = exp(log σ)
        torch.testing.assert_close(sent[k], mu[k] + torch.exp(glob[LOG_SIGMA + k]) * eps[k])
    assert set(sent) == set(local.task.init_params())  # θt and θ̂: what Alg. 1 line 5 distributes
    up = client_updates(alg, local, Backend("sequential"), sent, cohort, torch.stack([rng.key(0, i) for i in range(4)]))
    down_bytes, up_bytes = alg.bytes_exchanged(sent, up)
    params = local.task.init_params()
    head = sum(v.numel() * 4 for k, v in params.items() if k.startswith("head."))
    enc = sum(v.numel() * 4 for k, v in params.items() if not k.startswith("head."))
    assert head == (6 * 4 + 4) * 4 and enc == (8 * 6 + 6) * 4  # MLP(8, 4, [6]): the head is the 6 -> 4 layer
    assert down_bytes == enc + head and up_bytes == head + 2 * enc
    assert AFML(exchange="compact").bytes_exchanged(sent, up) == (enc + head, enc + head)


def _query_features(alg, local, sent, client, key):
    hs = alg.split(local.task)
    head = {k: v for k, v in sent.items() if k.startswith("head.")}
    theta_t = {k: v for k, v in sent.items() if not k.startswith("head.")}
    support, query = split_support_query(client, rng.fold(key, 1), alg.support_fraction)
    xs, ys, ms = sample_batch(support, rng.fold(key, 2), None)
    xq, yq, mq = sample_batch(query, rng.fold(key, 3), None)
    k6 = rng.fold(key, 6)
    zs, zq = hs.features(theta_t, xs, rng.fold(k6, 1)), hs.features(theta_t, xq, rng.fold(k6, 2))
    return hs, head, (zs, ys, ms), (zq, yq, mq)


def test_head_gradient_is_the_query_loss_alone_by_default():
    """Alg. 1: g_c = ∇θ̂ L_φ(D′), autograd of the query loss after the inner step and nothing else
    (α large, so an L_ENC or L_CONS term in g_c would show)."""
    alg, local, glob, cohort = _setup(alpha=5.0)
    assert AFML().head_terms == "query"
    sent = alg.broadcast(glob, rng.key(9), alg.init_server_state(glob))
    client, key = _client(cohort, 1), rng.key(3)
    up = alg.client_update(local, sent, client, key)
    hs, head, (zs, ys, ms), (zq, yq, mq) = _query_features(alg, local, sent, client, key)

    def query_loss(h):  # one SGD step on the support features (lr η = 0.5), then the query loss
        return hs.loss(sgd(h, grad(hs.loss)(h, zs, ys, ms), 0.5), zq, yq, mq)

    g = grad(query_loss)(head)
    for k in head:
        torch.testing.assert_close(up.delta[k], g[k], rtol=1e-5, atol=1e-7)


def test_enc_gradient_reaches_the_global_head_with_head_terms_query_enc():
    alg, local, glob, cohort = _setup(alpha=0.5, head_terms="query+enc")
    sent = alg.broadcast(glob, rng.key(9), alg.init_server_state(glob))
    client, key = _client(cohort, 1), rng.key(3)
    with_enc = alg.client_update(local, sent, client, key)
    query_only = AFML(init_sigma=0.05, alpha=0.5).client_update(local, sent, client, key)
    hs, head, _, (zq, yq, mq) = _query_features(alg, local, sent, client, key)
    g_enc = grad(hs.loss)(head, zq, yq, mq)  # ∇θ̂ L_ENC: the global head on the query features
    for k in head:
        diff = with_enc.delta[k] - query_only.delta[k]
        torch.testing.assert_close(diff, 0.5 * g_enc[k], rtol=1e-4, atol=1e-6)
        assert g_enc[k].abs().sum() > 0 and not torch.allclose(g_enc[k], query_only.delta[k])


def test_cmpx_is_the_whole_kl_unscaled_by_n_by_default():
    """Eq. 4: + β KL(N(θu, σ²) || N(0, I)), no 1/n. With every client gradient zero, the server's
    Δ is β ∂KL: β θu for θu and β (σ² - 1) for log σ; per_example divides both by n (here 20)."""
    alg = AFML(beta=2.0)
    glob = {"head.w": torch.zeros(2), MU + "w": torch.tensor([0.5, -1.0]), LOG_SIGMA + "w": torch.log(torch.tensor([0.2, 1.5]))}
    zero = {"head.w": torch.zeros(3, 2), ENC + "w": torch.zeros(3, 2)}
    updates = ClientUpdate(zero, torch.full((3,), 20.0), {})
    want_mu, want_ls = [1.0, -2.0], [2.0 * (0.04 - 1.0), 2.0 * (2.25 - 1.0)]
    kl = (0.5 * (0.04 + 0.25 - 1) - math.log(0.2)) + (0.5 * (2.25 + 1.0 - 1) - math.log(1.5))
    for scale, n in (("model", 1.0), ("per_example", 20.0)):
        a = AFML(beta=2.0, cmpx_scale=scale)
        state = a.init_server_state(glob)
        a.broadcast(glob, rng.key(1), state)
        delta = a.aggregate(updates, state)
        torch.testing.assert_close(delta[MU + "w"], torch.tensor(want_mu) / n)
        torch.testing.assert_close(delta[LOG_SIGMA + "w"], torch.tensor(want_ls) / n)
        assert abs(float(state["l_cmpx"]) - kl / n) < 1e-5
    assert alg.cmpx_scale == "model"


def test_alpha_beta_zero_is_head_only_maml_with_a_sampled_encoder():
    alg, local, glob, cohort = _setup(alpha=0.0, beta=0.0, inner_steps=2, inner_lr=0.3)
    state = alg.init_server_state(glob)
    sent = alg.broadcast(glob, rng.key(9), state)
    client, key = _client(cohort, 2), rng.key(4)
    up = alg.client_update(local, sent, client, key)
    hs = alg.split(local.task)
    support, query = split_support_query(client, rng.fold(key, 1), alg.support_fraction)
    xs, ys, ms = sample_batch(support, rng.fold(key, 2), None)
    xq, yq, mq = sample_batch(query, rng.fold(key, 3), None)
    head = {k: v for k, v in sent.items() if k.startswith("head.")}
    theta_t = {k: v for k, v in sent.items() if not k.startswith("head.")}
    k6 = rng.fold(key, 6)

    def maml(h, t):  # two SGD steps on the head over support features, then the query loss
        zs, zq = hs.features(t, xs, rng.fold(k6, 1)), hs.features(t, xq, rng.fold(k6, 2))
        for _ in range(2):
            h = sgd(h, grad(hs.loss)(h, zs, ys, ms), 0.3)
        return hs.loss(h, zq, yq, mq)

    g_head, g_t = grad(maml, argnums=(0, 1))(head, theta_t)
    for k in head:
        torch.testing.assert_close(up.delta[k], g_head[k], rtol=1e-4, atol=1e-7)
    for k in theta_t:
        torch.testing.assert_close(up.delta[ENC + k], g_t[k], rtol=1e-4, atol=1e-7)


def test_server_chain_rule_and_cmpx_match_finite_differences():
    """The server's ∇τ of mean_c [L_q + α(L_ENC + L_CONS)] + β KL/n, in float64, against central differences."""
    alg, local, glob, cohort = _setup(torch.float64, alpha=0.5, beta=2.0, inner_steps=2, cmpx_scale="per_example")
    keys = torch.stack([rng.key(0, i) for i in range(3)])
    cohort = ClientData(cohort.x[:3], cohort.y[:3], cohort.n[:3])
    noise = rng.key(9)

    def objective(g):
        sent = alg.broadcast(g, noise, alg.init_server_state(g))
        total = 0.0
        for i in range(3):
            c = ClientData(cohort.x[i], cohort.y[i], cohort.n[i])
            hs = alg.split(local.task)
            k = keys[i]
            support, query = split_support_query(c, rng.fold(k, 1), alg.support_fraction)
            b = sample_batch(support, rng.fold(k, 2), None), sample_batch(query, rng.fold(k, 3), None)
            head = {n: v for n, v in sent.items() if n.startswith("head.")}
            t = {n: v for n, v in sent.items() if not n.startswith("head.")}
            l_q, l_enc, l_cons = alg.losses(hs, head, t, *b, rng.fold(k, 6))
            total = total + float(l_q + alg.alpha * (l_enc + l_cons))
        mu = {n[len(MU):]: v for n, v in g.items() if n.startswith(MU)}
        ls = {n[len(LOG_SIGMA):]: v for n, v in g.items() if n.startswith(LOG_SIGMA)}
        inv_n = float((1.0 / cohort.n.double()).mean())
        return total / 3 + alg.beta * float(gaussian_kl(mu, ls)) * inv_n

    state = alg.init_server_state(glob)
    sent = alg.broadcast(glob, noise, state)
    updates = client_updates(alg, local, Backend("sequential"), sent, cohort, keys)
    delta = alg.aggregate(updates, state)
    h = 1e-6
    for name in ("enc_mu.hidden.0.weight", "enc_logsigma.hidden.0.weight", "enc_logsigma.hidden.0.bias"):
        for idx in [(0,), (3,)] if name.endswith("bias") else [(0, 0), (3, 5), (5, 2)]:
            plus = {**glob, name: glob[name].clone()}
            minus = {**glob, name: glob[name].clone()}
            plus[name][idx] += h
            minus[name][idx] -= h
            fd = (objective(plus) - objective(minus)) / (2 * h)
            assert abs(fd - float(delta[name][idx])) < 1e-6 + 1e-4 * abs(fd), (name, idx, fd, float(delta[name][idx]))


def _server(alg, init):
    params = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    groups = [{"params": [params[n] for n in names], **o} for names, o in alg.param_groups(list(params))]
    return Server(params, torch.optim.SGD(groups, lr=1.0), alg.init_server_state(init))


def test_exchange_changes_the_bytes_not_the_numbers():
    """exchange=alg1 (up ∇τ) and compact (up ∇θt): bit-identical parameters after three rounds,
    up bytes differing by exactly |f| per client."""
    alg, local, glob, cohort = _setup(alpha=0.3)
    compact = AFML(init_sigma=0.05, alpha=0.3, exchange="compact")
    a, b = _server(alg, glob), _server(compact, glob)
    enc = sum(v.numel() * 4 for k, v in local.task.init_params().items() if not k.startswith("head."))
    for r in range(3):
        keys = torch.stack([rng.key(0, r, i) for i in range(4)])
        out_a = run_round(alg, local, Backend("vmap"), a, cohort, keys, rng.key(0, r, 7))
        out_b = run_round(compact, local, Backend("vmap"), b, cohort, keys, rng.key(0, r, 7))
        assert out_a.bytes_down == out_b.bytes_down and out_a.bytes_up == out_b.bytes_up + 4 * enc
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k


def test_afml_vmap_equals_sequential():
    alg, local, glob, cohort = _setup()
    sent = alg.broadcast(glob, rng.key(9), alg.init_server_state(glob))
    keys = torch.stack([rng.key(0, i) for i in range(4)])
    a = client_updates(alg, local, Backend("vmap"), sent, cohort, keys)
    b = client_updates(alg, local, Backend("sequential"), sent, cohort, keys)
    for k in a.delta:
        torch.testing.assert_close(a.delta[k], b.delta[k], rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # a 30-round run
def test_sigma_learns_at_the_per_example_scale():
    """Eighty rounds of the default settings but L_CMPX per example (cmpx_scale=per_example, where the
    data terms and not L_CMPX alone drive τ) on the flagship's data (the default generated set; the
    flagship run has 100) move σ by more than 10% (it was inert under softplus at σ0=1e-3)."""
    torch.manual_seed(0)
    data = load_synthetic_mixture(num_clients=20, train_clients=16, seed=0)
    local = LocalTrainer(Task(MLP(60, 10, [64])), ClientSGD())
    alg = AFML(cmpx_scale="per_example")
    init = alg.init_global(local.task.init_params())
    params = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    groups = [{"params": [params[n] for n in names], **o} for names, o in alg.param_groups(list(params))]
    server = Server(params, torch.optim.SGD(groups, lr=1.0), alg.init_server_state(init))
    for r in range(80):
        ids = torch.randperm(16, generator=torch.Generator().manual_seed(r))[:8]
        out = run_round(alg, local, Backend("vmap"), server, data.train.train.gather(ids),
                        torch.stack([rng.key(0, r, int(i)) for i in ids]), rng.key(0, r, 7))
    assert abs(out.server_metrics["sigma_mean"] / alg.init_sigma - 1) > 0.10, out.server_metrics
    assert set(out.server_metrics) == {"l_cmpx", "sigma_mean", "sigma_min", "sigma_max"}
    assert {"loss", "l_enc", "l_cons"} <= set(out.metrics)


def _cfg(*overrides):
    return compose_cfg([*tiny(TINY_AFML), *overrides], tiny=False)


def test_afml_runs_under_both_backends_with_equal_results(tmp_path):
    runs = {b: train(_cfg("algorithm=afml", "zeta=0.4", f"engine.backend={b}", "engine.count_flops=true"), tmp_path / b)
            for b in ("vmap", "sequential")}
    a, b = runs["vmap"], runs["sequential"]
    for k in ("1", "2"):
        assert abs(a["personalized_accuracy"][k] - b["personalized_accuracy"][k]) < 1e-6
    assert abs(a["initial_accuracy"] - b["initial_accuracy"]) < 1e-6
    # bytes (Alg. 1): down θt and θ̂ (|f| + |h|), up g_c and g_g = ∇τ (|h| + 2|f|) per client
    enc, head = 4 * (60 * 64 + 64), 4 * (64 * 10 + 10)
    assert a["bytes"]["down_per_round"] == 4 * (enc + head)  # 4 clients per round
    assert a["bytes"]["up_per_round"] == 4 * (head + 2 * enc)
    assert a["flops_per_round"]["afml"] > 0
