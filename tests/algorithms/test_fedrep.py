"""FedRep (Collins et al. 2021, Alg. 1): head epochs with the body fixed, then body epochs with
the new head fixed, by hand; only the body travels; personalization trains the head only."""

import torch

from pfl import rng
from pfl.algorithms import FedRep
from pfl.algorithms.base import nbytes
from pfl.algorithms.head_split import split_by_prefix
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


def _heads(params, num):
    heads = split_by_prefix(params, "head")[1]
    return {k: torch.stack([perturbed(heads, 10 + i, 0.5)[k] for i in range(num)]) for k in heads}


def test_head_step_then_body_step_by_hand():
    task, params, data, local = _setup(batch=4, sizes=(4,))
    alg = FedRep(head_epochs=1, body_epochs=1)
    heads = _heads(params, 1)
    out = updates(alg, local, params, data, state=heads)
    x, y = data.x[0], data.y[0]
    body0, _ = split_by_prefix(params, "head")
    h0 = {k: v[0] for k, v in heads.items()}
    g = full_batch_grad(task, {**body0, **h0}, x, y)
    h1 = {k: h0[k] - LR * g[k] for k in h0}  # the head at the body φ^t
    g = full_batch_grad(task, {**body0, **h1}, x, y)
    body1 = {k: body0[k] - LR * g[k] for k in body0}  # then the body at the new head
    for k in h1:
        torch.testing.assert_close(out.state[k][0], h1[k])
    for k in body0:
        torch.testing.assert_close(out.delta[k][0], body0[k] - body1[k])
    assert set(out.delta) == set(body0)
    sent = alg.broadcast(params, rng.key(0), {})
    assert alg.bytes_exchanged(sent, out) == (nbytes(body0), nbytes(body0))


def test_personalization_trains_only_the_head():
    task, params, data, local = _setup(seed=1)
    alg = FedRep()
    n = int(data.n[1])
    d = ClientData(data.x[1, :n], data.y[1, :n], data.n[1])
    own = {k: v[0] for k, v in _heads(params, 1).items()}
    seen = []
    alg.adapt(local, params, d, rng.key(0), 2, lambda e, p: seen.append(p), state=own)
    body0, _ = split_by_prefix(params, "head")
    for p in seen:
        assert all(torch.equal(p[k], body0[k]) for k in body0)
        assert not torch.equal(p["head.weight"], own["head.weight"])
    assert torch.equal(alg.personal_model(params, own)["head.weight"], own["head.weight"])


def test_vmap_equals_sequential():
    task, params, data, local = _setup(seed=2)
    assert_backends_agree(FedRep(head_epochs=2, body_epochs=1), local, params, data, _heads(params, 3))
