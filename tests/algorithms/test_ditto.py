"""Ditto (Li et al. 2021, Alg. 1): the global part is FedAvg; λ = 0 is local training of v;
λ = 1/lr pulls one step to w - lr·∇F(v); personalization starts from v (training) or w (held-out)."""

import torch

from pfl import rng
from pfl.algorithms import Ditto, FedAvg
from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import ClientData
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.task import Task

from tests.helpers.baselines import assert_backends_agree, full_batch_grad, perturbed, stacked_state, updates
from tests.helpers.engine import cohort

LR = 0.1


def _setup(seed=0, batch=2, sizes=(5, 9, 3)):
    torch.manual_seed(seed)
    task = Task(MLP(5, 3, [4]))
    return task, task.init_params(), cohort(list(sizes)), LocalTrainer(task, ClientSGD(lr=LR, batch_size=batch))


def _personal(params, num, seed=7):
    return {k: v.unsqueeze(0).repeat(num, *[1] * v.dim()) for k, v in perturbed(params, seed, 0.3).items()}


def test_global_model_is_fedavg_and_lambda_zero_is_local_training():
    task, params, data, local = _setup()
    v0 = _personal(params, 3)
    out = updates(Ditto(local_epochs=2, personal_epochs=3, lam=0.0), local, params, data, state=v0)
    ref = updates(FedAvg(local_epochs=2), local, params, data)
    for k in params:
        assert torch.equal(out.delta[k], ref.delta[k]), k
    for i in range(3):  # v: 3 epochs of plain local training from the client's own v0
        n = int(data.n[i])
        d = ClientData(data.x[i, :n], data.y[i, :n], data.n[i])
        v, _ = local.train({k: t[i] for k, t in v0.items()}, d, rng.fold(rng.key(0, i), 0xD1770),
                           lambda m: 3 * local.batches_per_epoch(m))
        for k in params:
            torch.testing.assert_close(out.state[k][i], v[k])


def test_lambda_one_over_lr_lands_next_to_the_global_model():
    task, params, data, local = _setup(seed=1, batch=4, sizes=(4,))
    v0 = _personal(params, 1)
    out = updates(Ditto(personal_epochs=1, lam=1 / LR), local, params, data, state=v0)
    g = full_batch_grad(task, {k: t[0] for k, t in v0.items()}, data.x[0], data.y[0])
    for k in params:  # v1 = v0 - lr(∇F(v0) + λ(v0 - w)) = w - lr·∇F(v0)
        torch.testing.assert_close(out.state[k][0], params[k] - LR * g[k], rtol=1e-5, atol=1e-6)
    # and λ pins v: the larger λ (λ·lr < 2), the closer v stays to w
    dist = []
    for lam in (0.0, 2.0, 9.0):
        o = updates(Ditto(personal_epochs=3, lam=lam), local, params, data, state=v0)
        dist.append(sum(float((o.state[k][0] - params[k]).norm()) for k in params))
    assert dist[0] > dist[1] > dist[2]


def test_personalization_starts_from_v_or_from_w():
    task, params, data, local = _setup(seed=2)
    alg = Ditto(lam=0.5)
    v = {k: t[0] for k, t in _personal(params, 1).items()}
    assert all(torch.equal(alg.personal_model(params, v)[k], v[k]) for k in params)
    assert all(torch.equal(alg.personal_model(params, None)[k], params[k]) for k in params)
    n = int(data.n[0])
    d = ClientData(data.x[0, :n], data.y[0, :n], data.n[0])
    seen_none, seen_w = [], []
    alg.adapt(local, params, d, rng.key(1), 2, lambda e, p: seen_none.append(p))
    alg.adapt(local, params, d, rng.key(1), 2, lambda e, p: seen_w.append(p), state=dict(params))
    for a, b in zip(seen_none, seen_w):  # a held-out client is a training client whose v is w
        assert all(torch.equal(a[k], b[k]) for k in params)


def test_vmap_equals_sequential():
    task, params, data, local = _setup(seed=3)
    assert_backends_agree(Ditto(local_epochs=2, personal_epochs=2, lam=0.3), local, params, data,
                          _personal(params, 3))
    assert stacked_state(Ditto(), params, 2)["head.weight"].shape[0] == 2
