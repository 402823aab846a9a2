"""FedAS (Yang et al. 2024): without alignment a client's update is FedPer's, weighted by its Fisher
trace; the alignment step and the Fisher trace by hand; the server's F-weighted mean; vmap == sequential."""

import torch

from pfl import rng
from pfl.algorithms import FedAS, FedPer
from pfl.algorithms.head_split import HeadSplit, split_by_prefix
from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import ClientData
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.task import Task

from tests.helpers.baselines import assert_backends_agree, full_batch_grad, perturbed, updates
from tests.helpers.engine import cohort

LR = 0.1


def _setup(seed=0, batch=2, sizes=(5, 9, 3)):
    torch.manual_seed(seed)
    task = Task(MLP(5, 3, [4]))
    return task, task.init_params(), cohort(list(sizes)), LocalTrainer(task, ClientSGD(lr=LR, batch_size=batch))


def _locals(params, num):
    return {k: torch.stack([perturbed(params, 20 + i, 0.4)[k] for i in range(num)]) for k in params}


def test_without_alignment_the_update_is_fedpers_weighted_by_the_fisher_trace():
    task, params, data, local = _setup()
    own = _locals(params, 3)
    out = updates(FedAS(align_epochs=0, local_epochs=2), local, params, data, state=own)
    heads = {k: v for k, v in own.items() if k.startswith("head.")}
    ref = updates(FedPer(local_epochs=2), local, params, data, state=heads)
    for k in ref.delta:
        torch.testing.assert_close(out.delta[k], ref.delta[k], rtol=0, atol=0)
    for k in heads:
        torch.testing.assert_close(out.state[k], ref.state[k], rtol=0, atol=0)
    assert bool((out.weight > 0).all()) and not torch.equal(out.weight, data.n.float())


def test_alignment_step_and_fisher_trace_by_hand():
    task, params, data, local = _setup(seed=1, batch=8, sizes=(6,))
    own = {k: v[0] for k, v in _locals(params, 1).items()}
    alg = FedAS(align_lr=0.5)
    d = ClientData(data.x[0], data.y[0], data.n[0])
    aligned = alg.align(local, split_by_prefix(params, "head")[0], own, d, rng.key(3))
    hs = HeadSplit(task, "head")
    x, y = data.x[0], data.y[0]
    z_own = hs.features(split_by_prefix(own, "head")[0], x, None)

    def loss(body):  # Σ_c MSE(φ(x_c), P_c), P_c the mean of the client's own features of class c
        z = hs.features(body, x, None)
        return sum(((z[y == c] - z_own[y == c].mean(0)) ** 2).mean() for c in y.unique())

    body0 = split_by_prefix(params, "head")[0]
    g = torch.func.grad(loss)(body0)
    for k in body0:  # one epoch = one full-batch step (batch 8 > 6 examples)
        torch.testing.assert_close(aligned[k], body0[k] - 0.5 * g[k])
    trained = perturbed(params, 9, 0.2)
    g = full_batch_grad(task, trained, x, y)
    want = sum(float((v ** 2).sum()) for v in g.values())
    assert abs(float(alg.fisher_trace(local, trained, d, rng.key(4))) - want) < 1e-5 * want


def test_the_server_averages_bodies_by_fisher_trace():
    task, params, data, local = _setup(seed=2)
    alg = FedAS()
    out = updates(alg, local, params, data, state=_locals(params, 3))
    mean = alg.aggregate(out, {})
    w = torch.stack([alg.fisher_trace(local, {k: v[i] for k, v in out.state.items()},
                                      ClientData(data.x[i, :int(data.n[i])], data.y[i, :int(data.n[i])], data.n[i]),
                                      rng.fold(rng.key(0, i), 0xF15)) for i in range(3)])
    torch.testing.assert_close(out.weight, w)
    w = w / w.sum()
    for k in mean:
        torch.testing.assert_close(mean[k], (out.delta[k] * w.reshape(-1, *[1] * (out.delta[k].dim() - 1))).sum(0))


def test_vmap_equals_sequential():
    task, params, data, local = _setup(seed=3)
    assert_backends_agree(FedAS(local_epochs=2), local, params, data, _locals(params, 3))
