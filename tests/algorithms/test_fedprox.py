"""FedProx (Li et al. 2020, Eq. 2): μ = 0 is FedAvg exactly; the proximal step by hand."""

import torch

from pfl.algorithms import FedAvg, FedProx
from pfl.algorithms.local import LocalTrainer
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.task import Task

from tests.helpers.baselines import assert_backends_agree, full_batch_grad, updates
from tests.helpers.engine import cohort


def _setup(seed=0, batch=2, sizes=(5, 9, 3)):
    torch.manual_seed(seed)
    task = Task(MLP(5, 3, [4]))
    return task, task.init_params(), cohort(list(sizes)), LocalTrainer(task, ClientSGD(lr=0.1, batch_size=batch))


def test_mu_zero_is_fedavg_exactly():
    task, params, data, local = _setup()
    a = updates(FedProx(local_epochs=2, mu=0.0), local, params, data)
    b = updates(FedAvg(local_epochs=2), local, params, data)
    for k in params:
        assert torch.equal(a.delta[k], b.delta[k]), k
    assert torch.equal(a.weight, b.weight)


def test_two_proximal_steps_by_hand():
    task, params, data, local = _setup(seed=1, batch=4, sizes=(4,))
    mu, lr = 0.7, 0.1
    out = updates(FedProx(local_epochs=2, mu=mu), local, params, data)  # 2 epochs of one full batch
    x, y = data.x[0], data.y[0]
    w0 = params
    g0 = full_batch_grad(task, w0, x, y)
    w1 = {k: w0[k] - lr * g0[k] for k in w0}  # the proximal gradient μ(w - w0) is 0 at w0
    g1 = full_batch_grad(task, w1, x, y)
    w2 = {k: w1[k] - lr * (g1[k] + mu * (w1[k] - w0[k])) for k in w0}
    for k in w0:
        torch.testing.assert_close(out.delta[k][0], w0[k] - w2[k])
    # and μ > 0 really changes Δ (a FedProx that ignored μ fails here)
    plain = updates(FedAvg(local_epochs=2), local, params, data)
    assert not torch.allclose(plain.delta["hidden.0.weight"], out.delta["hidden.0.weight"])


def test_vmap_equals_sequential():
    task, params, data, local = _setup(seed=2)
    assert_backends_agree(FedProx(local_epochs=2, mu=0.5), local, params, data)
