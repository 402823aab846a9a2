"""Identities that pin the meta-learning reading of FedAvg down (Jiang et al. 2019).

- eq. (5): Δ FedAvg(K steps) = Δ FedSGD + Σ_{j=1}^{K-1} Δ FOMAML(j), equal weights, plain SGD;
- Reptile(1) = FedSGD (equal sizes, one batch = all data);
- MAML's meta-gradient = double-backward autograd of the explicitly unrolled inner loop;
- MAML vmap = sequential.
"""

import pytest
import torch
from torch import nn

from pfl import rng
from pfl.algorithms import FOMAML, MAML, FedAvg, FedSGD, Reptile
from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import ClientData
from pfl.models.mlp import MLP
from pfl.optim import ClientAdam, ClientSGD
from pfl.task import Task

from tests.helpers.engine import aggregate as _aggregate, cohort as _cohort, run_round


def _run(alg, local, params, data, backend="sequential"):
    return run_round(alg, local, params, data, backend, key_seed=7)


def _setup(seed=0, hidden=(4,)):
    torch.manual_seed(seed)
    task = Task(MLP(5, 3, list(hidden)))
    return task, task.init_params()


@pytest.mark.parametrize("batch_size", [3, 12])  # minibatches (4 per epoch) and full batch
def test_equation_5_fedavg_is_fedsgd_plus_fomaml(batch_size):
    task, params = _setup(0)
    data = _cohort([12, 12, 12])  # equal sizes: FedAvg's example weights are equal weights
    local = LocalTrainer(task, ClientSGD(lr=0.1, batch_size=batch_size))
    fedavg = FedAvg(local_epochs=2)
    k = int(fedavg.steps(local)(data.n)[0])
    assert k == 2 * 12 // batch_size
    lhs = _aggregate(_run(fedavg, local, params, data))
    rhs = _aggregate(_run(FedSGD(full_batch=False), local, params, data))
    for j in range(1, k):
        part = _aggregate(_run(FOMAML(local_steps=j), local, params, data))
        rhs = {n: rhs[n] + part[n] for n in rhs}
    for n in lhs:
        torch.testing.assert_close(lhs[n], rhs[n], rtol=1e-5, atol=1e-6)
    assert all(float(v.abs().sum()) > 0 for v in lhs.values())


def test_equation_5_by_hand_two_steps():
    """K = 2 on one client, full batch: θ - θ_2 = lr g(θ) + lr g(θ - lr g(θ))."""
    task, params = _setup(1, hidden=())
    data = _cohort([6])
    lr = 0.3
    local = LocalTrainer(task, ClientSGD(lr=lr, batch_size=6))
    x, y = data.x[0], data.y[0]
    grad = torch.func.grad(lambda p: nn.functional.cross_entropy(task.logits(p, x), y))
    g0 = grad(params)
    g1 = grad({n: params[n] - lr * g0[n] for n in params})
    fedavg = _run(FedAvg(local_epochs=2), local, params, data)
    fedsgd = _run(FedSGD(), local, params, data)
    fomaml = _run(FOMAML(local_steps=1), local, params, data)
    for n in params:
        torch.testing.assert_close(fedsgd.delta[n][0], lr * g0[n])
        torch.testing.assert_close(fomaml.delta[n][0], lr * g1[n])
        torch.testing.assert_close(fedavg.delta[n][0], lr * (g0[n] + g1[n]))


def test_reptile_1_equals_fedsgd_and_k0_meta_algorithms_equal_fedsgd_on_a_minibatch():
    task, params = _setup(2)
    data = _cohort([8, 8, 8, 8], seed=1)
    full = LocalTrainer(task, ClientSGD(lr=0.05, batch_size=8))
    a = _aggregate(_run(Reptile(local_steps=1), full, params, data))
    b = _aggregate(_run(FedSGD(), full, params, data))
    mini = LocalTrainer(task, ClientSGD(lr=0.05, batch_size=3))
    c = _aggregate(_run(FedSGD(full_batch=False), mini, params, data))
    d = _aggregate(_run(FOMAML(local_steps=0), mini, params, data))
    e = _aggregate(_run(MAML(local_steps=0), mini, params, data))
    for n in a:
        torch.testing.assert_close(a[n], b[n])
        torch.testing.assert_close(c[n], d[n])
        torch.testing.assert_close(c[n], e[n])
        assert not torch.allclose(b[n], c[n])  # a minibatch is not the full batch


def _unrolled_meta_gradient(task, params, data, key, lr, k):
    """Explicit inner loop with torch.autograd (create_graph=True), then backward."""
    local = LocalTrainer(task, ClientSGD(lr=lr, batch_size=4))
    theta = {n: v.clone().requires_grad_(True) for n, v in params.items()}
    p = dict(theta)
    for s in range(k):
        x, y, mask = local.batch(data, key, torch.tensor(s))
        loss = task.loss(p, x, y, mask)
        gs = torch.autograd.grad(loss, list(p.values()), create_graph=True)
        p = {n: v - lr * g for (n, v), g in zip(p.items(), gs)}
    x, y, mask = local.batch(data, key, torch.tensor(k))
    outer = task.loss(p, x, y, mask)
    gs = torch.autograd.grad(outer, list(theta.values()))
    return dict(zip(theta, gs))


def test_maml_meta_gradient_equals_double_backward_of_unrolled_loop():
    task, params = _setup(3, hidden=(6,))
    data = _cohort([10])
    one = ClientData(data.x[0], data.y[0], data.n[0])
    key = rng.key(7, 0)
    lr, k = 0.5, 3
    local = LocalTrainer(task, ClientSGD(lr=lr, batch_size=4))
    maml = MAML(local_steps=k).client_update(local, params, one, key)
    fomaml = FOMAML(local_steps=k).client_update(local, params, one, key)
    expected = _unrolled_meta_gradient(task, params, one, key, lr, k)
    for n in params:
        torch.testing.assert_close(maml.delta[n] / lr, expected[n], rtol=1e-4, atol=1e-6)
    # the second-order terms matter here: MAML is not FOMAML
    gap = sum(float((maml.delta[n] - fomaml.delta[n]).abs().sum()) for n in params)
    assert gap > 1e-4


@pytest.mark.parametrize("opt", [ClientSGD(lr=0.2, batch_size=4, momentum=0.5), ClientAdam(lr=0.01, batch_size=4)])
def test_maml_and_fomaml_vmap_equal_sequential(opt):
    task, params = _setup(4)
    data = _cohort([5, 11, 2], seed=2)  # client 2 is smaller than one batch
    local = LocalTrainer(task, opt)
    for alg in (MAML(local_steps=2), FOMAML(local_steps=3)):
        seq = _run(alg, local, params, data, "sequential")
        vec = _run(alg, local, params, data, "vmap")
        assert seq.weight.tolist() == [1.0, 1.0, 1.0]
        for n in params:
            torch.testing.assert_close(vec.delta[n], seq.delta[n], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(vec.metrics["loss"], seq.metrics["loss"], rtol=1e-4, atol=1e-6)


def test_bad_local_steps_is_one_line_error():
    from pfl.config.errors import ConfigError

    with pytest.raises(ConfigError, match="algorithm.local_steps"):
        MAML(local_steps=-1)
    with pytest.raises(ConfigError, match="algorithm.full_batch"):
        FedSGD(full_batch="yes")
