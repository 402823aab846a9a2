"""pFedMe (Dinh et al. 2020, Alg. 1): K inner steps on the Moreau envelope (Eq. 7), the local
update (Eq. 8) and the server's β-mixing (Eq. 10), by hand."""

import torch

from pfl import rng
from pfl.algorithms import PFedMe
from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import ClientData
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.task import Task

from tests.helpers.baselines import assert_backends_agree, full_batch_grad, stacked_state, updates
from tests.helpers.engine import cohort

ETA, LAM, PLR, K = 0.05, 3.0, 0.1, 3


def _setup(seed=0, batch=20, sizes=(4, 7)):
    torch.manual_seed(seed)
    task = Task(MLP(5, 3, [4]))
    return task, task.init_params(), cohort(list(sizes)), LocalTrainer(task, ClientSGD(lr=ETA, batch_size=batch))


def _by_hand(task, w0, x, y):
    theta = dict(w0)
    for _ in range(K):  # θ ← θ - plr(∇f(θ) + λ(θ - w))
        g = full_batch_grad(task, theta, x, y)
        theta = {k: theta[k] - PLR * (g[k] + LAM * (theta[k] - w0[k])) for k in theta}
    w1 = {k: w0[k] - ETA * LAM * (w0[k] - theta[k]) for k in w0}  # Eq. (8)
    return theta, w1


def test_k_inner_steps_local_update_and_beta_one_by_hand():
    task, params, data, local = _setup()  # one full batch per client: R = 1 local round
    alg = PFedMe(lam=LAM, inner_steps=K, personal_lr=PLR, beta=1.0)
    out = updates(alg, local, params, data, state=stacked_state(alg, params, 2))
    finals = []
    for i in range(2):
        n = int(data.n[i])
        theta, w1 = _by_hand(task, params, data.x[i, :n], data.y[i, :n])
        finals.append(w1)
        for k in params:
            torch.testing.assert_close(out.state[k][i], theta[k], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(out.delta[k][i], params[k] - w1[k], rtol=1e-5, atol=1e-6)
    assert out.weight.tolist() == [1.0, 1.0]
    for beta in (1.0, 0.5):  # Eq. (10): (1 - β) w + β · mean w_i, through the server optimizer
        glob = {k: torch.nn.Parameter(v.clone()) for k, v in params.items()}
        opt = PFedMe(beta=beta).server_optimizer([{"params": list(glob.values())}], None)
        PFedMe(beta=beta).server_update(glob, alg.aggregate(out, {}), opt, {}, out)
        for k in params:
            mean = (finals[0][k] + finals[1][k]) / 2
            torch.testing.assert_close(glob[k].detach(), (1 - beta) * params[k] + beta * mean, rtol=1e-5, atol=1e-6)


def test_personalization_evaluates_theta():
    task, params, data, local = _setup(seed=1)
    alg = PFedMe(lam=LAM, inner_steps=K, personal_lr=PLR)
    n = int(data.n[0])
    d = ClientData(data.x[0, :n], data.y[0, :n], data.n[0])
    seen = []
    alg.adapt(local, params, d, rng.key(0), 1, lambda e, p: seen.append(p))  # held-out: θ and w start at w
    theta, _ = _by_hand(task, params, d.x, d.y)
    for k in params:
        torch.testing.assert_close(seen[0][k], theta[k], rtol=1e-5, atol=1e-6)


def test_vmap_equals_sequential():
    task, params, data, local = _setup(seed=2, batch=2, sizes=(5, 9, 3))
    alg = PFedMe(local_epochs=2, lam=LAM, inner_steps=2, personal_lr=PLR)
    assert_backends_agree(alg, local, params, data, stacked_state(alg, params, 3))
