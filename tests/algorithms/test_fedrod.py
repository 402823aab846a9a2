"""FedRoD (Chen & Chao 2022): the generic path is FedAvg on the balanced-softmax loss (and FedAvg itself
for a class-balanced client); L_BSM and one personalized-head step by hand; the personalized model is
the head g + h; vmap == sequential."""

import math

import torch

from pfl import rng
from pfl.algorithms import FedAvg, FedRoD
from pfl.algorithms.base import model_delta
from pfl.algorithms.fedrod import balanced_softmax_loss, log_class_counts
from pfl.algorithms.head_split import HeadSplit
from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import ClientData
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.task import Task

from tests.helpers.baselines import assert_backends_agree, perturbed, updates
from tests.helpers.engine import cohort

LR = 0.1


def _setup(seed=0, batch=2, sizes=(5, 9, 3)):
    torch.manual_seed(seed)
    task = Task(MLP(5, 3, [4]))
    return task, task.init_params(), cohort(list(sizes)), LocalTrainer(task, ClientSGD(lr=LR, batch_size=batch))


def _heads(params, num, scale=0.5):
    head = {k: v for k, v in params.items() if k.startswith("head.")}
    return {k: torch.stack([perturbed(head, 10 + i, scale)[k] - head[k] for i in range(num)]) for k in head}


def _client(data, i):
    n = int(data.n[i])
    return ClientData(data.x[i, :n], data.y[i, :n], data.n[i])


def test_balanced_softmax_by_hand():
    task = Task(MLP(5, 3, []))
    data = ClientData(torch.zeros(4, 5), torch.tensor([0, 0, 0, 2]), torch.tensor(4))
    log_n = log_class_counts(task, data, 3)  # n = (3, 0, 1)
    logits = torch.tensor([[1.0, 2.0, 0.0]])
    got = balanced_softmax_loss(task, logits, log_n, torch.tensor([0]), torch.tensor([True]))
    want = -math.log(3 * math.e / (3 * math.e + 1 * math.exp(0.0)))  # class 1 is absent: no term
    assert abs(float(got) - want) < 1e-6


def test_generic_path_is_fedavg_on_balanced_softmax():
    task, params, data, local = _setup()
    alg = FedRoD(local_epochs=2)
    out = updates(alg, local, params, data, state=_heads(params, 3))
    for i in range(3):
        d = _client(data, i)
        bsm = log_class_counts(task, d, 3)
        hs = HeadSplit(task, "head")

        def loss(p, x, y, mask, key, bsm=bsm, hs=hs):
            body, head = hs.split(p)
            return balanced_softmax_loss(task, hs.logits(head, hs.features(body, x, key)), bsm, y, mask)

        new, _ = local.train(params, d, rng.key(0, i), lambda n: 2 * local.batches_per_epoch(n), loss=loss)
        for k, v in model_delta(params, new).items():
            torch.testing.assert_close(out.delta[k][i], v, rtol=1e-5, atol=1e-6)


def test_a_class_balanced_client_is_fedavg():
    task, params, _, local = _setup(seed=1)
    x = torch.randn(1, 6, 5)
    data = ClientData(x, torch.tensor([[0, 1, 2, 2, 1, 0]]), torch.tensor([6]))
    out = updates(FedRoD(), local, params, data, state=_heads(params, 1))
    ref = updates(FedAvg(), local, params, data)
    for k in params:
        torch.testing.assert_close(out.delta[k], ref.delta[k], rtol=1e-5, atol=1e-6)


def test_personal_head_step_by_hand_and_the_personalized_model():
    task, params, data, local = _setup(seed=2, batch=8, sizes=(6,))
    phi = _heads(params, 1)
    out = updates(FedRoD(), local, params, data, state=phi)
    hs = HeadSplit(task, "head")
    body, generic = hs.split(params)
    x, y = data.x[0], data.y[0]
    z = hs.features(body, x, None)

    def ce(h):  # CE(g(z) + h(z)) with g(z) and z fixed: φ's risk
        return torch.nn.functional.cross_entropy(hs.logits(generic, z) + hs.logits(h, z), y)

    p0 = {k: v[0] for k, v in phi.items()}
    g = torch.func.grad(ce)(p0)
    for k in p0:
        torch.testing.assert_close(out.state[k][0], p0[k] - LR * g[k])
    personal = FedRoD().personal_model(params, p0)  # the head ψ + φ computes g(z) + h(z)
    torch.testing.assert_close(task.logits(personal, x), hs.logits(generic, z) + hs.logits(p0, z))
    assert all(torch.equal(FedRoD().personal_model(params, None)[k], params[k]) for k in params)


def test_vmap_equals_sequential():
    task, params, data, local = _setup(seed=3)
    assert_backends_agree(FedRoD(local_epochs=2), local, params, data, _heads(params, 3))
