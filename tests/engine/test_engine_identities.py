"""Hand-checkable identities of the core algorithms and the engine."""

import torch
from torch import nn

from pfl import rng
from pfl.algorithms import FedAvg, FedSGD, Reptile
from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import ClientData, Population
from pfl.models.cnn import SmallCNN
from pfl.models.mlp import MLP
from pfl.optim import ClientAdam, ClientSGD
from pfl.task import Task

from tests.helpers.engine import aggregate as _aggregate, cohort as _cohort, run_round


def _run(alg, local, params, data, backend="sequential"):
    return run_round(alg, local, params, data, backend, key_seed=0)


def test_fedavg_one_full_batch_step_equals_fedsgd():
    torch.manual_seed(0)
    task = Task(MLP(5, 3, [4]))
    params = task.init_params()
    data = _cohort([6, 6, 6])
    local = LocalTrainer(task, ClientSGD(lr=0.1, batch_size=6))  # one batch = all data
    a = _aggregate(_run(FedAvg(local_epochs=1), local, params, data))
    b = _aggregate(_run(FedSGD(), local, params, data))
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    # and FedSGD's delta is lr times the full-batch gradient, by hand
    x, y = data.x[0], data.y[0]
    g = torch.func.grad(lambda p: nn.functional.cross_entropy(task.logits(p, x), y))(params)
    single = _run(FedSGD(), local, params, ClientData(data.x[:1], data.y[:1], data.n[:1]))
    for k in g:
        torch.testing.assert_close(single.delta[k][0], 0.1 * g[k])


def test_server_sgd_lr1_over_fedavg_is_weighted_model_average():
    torch.manual_seed(1)
    task = Task(MLP(5, 3, []))
    params = task.init_params()
    data = _cohort([3, 9, 5])
    local = LocalTrainer(task, ClientSGD(lr=0.05, batch_size=2))
    alg = FedAvg(local_epochs=2)
    out = _run(alg, local, params, data)
    # each client's own final model, trained alone
    finals = []
    for i in range(3):
        d = ClientData(data.x[i, : data.n[i]], data.y[i, : data.n[i]], data.n[i])
        new, _ = local.train(params, d, rng.key(0, i), alg.steps(local))
        finals.append(new)
    w = data.n.float() / data.n.sum()
    glob = {k: nn.Parameter(v.clone()) for k, v in params.items()}
    opt = torch.optim.SGD(glob.values(), lr=1.0)
    agg = _aggregate(out)
    for k, p in glob.items():
        p.grad = agg[k]
    opt.step()
    for k in params:
        expected = sum(w[i] * finals[i][k] for i in range(3))
        torch.testing.assert_close(glob[k].detach(), expected)


def test_reptile_is_unweighted_and_takes_k_steps():
    torch.manual_seed(2)
    task = Task(MLP(5, 3, []))
    params = task.init_params()
    data = _cohort([4, 12])
    local = LocalTrainer(task, ClientSGD(lr=0.1, batch_size=4))
    out = _run(Reptile(local_steps=3), local, params, data)
    assert out.weight.tolist() == [1.0, 1.0]
    # 3 steps on a 4-example client = 3 epochs of one full batch: plain GD by hand
    x, y = data.x[0, :4], data.y[0, :4]
    p = dict(params)
    for _ in range(3):
        g = torch.func.grad(lambda q: nn.functional.cross_entropy(task.logits(q, x), y))(p)
        p = {k: p[k] - 0.1 * g[k] for k in p}
    for k in p:
        torch.testing.assert_close(out.delta[k][0], params[k] - p[k])


def _image_cohort(sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.rand(n, 8, 8, generator=g) for n in sizes]
    ys = [torch.randint(0, 4, (n,), generator=g) for n in sizes]
    pop = Population.from_clients([str(i) for i in range(len(sizes))], xs, ys, xs, ys)
    return pop.train.gather(torch.arange(len(sizes)))


def test_vmap_equals_sequential_conv_dropout_small_client():
    torch.manual_seed(3)
    model = SmallCNN(num_classes=4, dropout=0.5)
    task = Task(model)
    params = task.init_params()
    data = _image_cohort([3, 25, 11])  # client 0 is smaller than one batch
    for opt in (ClientSGD(lr=0.1, batch_size=8, momentum=0.9), ClientAdam(lr=0.01, batch_size=8)):
        local = LocalTrainer(task, opt)
        alg = FedAvg(local_epochs=2)
        seq = _run(alg, local, params, data, "sequential")
        vec = _run(alg, local, params, data, "vmap")
        for k in params:
            torch.testing.assert_close(vec.delta[k], seq.delta[k], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(vec.metrics["loss"], seq.metrics["loss"], rtol=1e-4, atol=1e-6)
        assert all(float(v.abs().sum()) > 0 for v in seq.delta.values())


def test_dropout_is_active_in_training_and_keyed():
    torch.manual_seed(4)
    task = Task(SmallCNN(num_classes=4, dropout=0.5))
    params = task.init_params()
    x = torch.rand(2, 8, 8)
    a = task.logits(params, x, rng.key(1))
    b = task.logits(params, x, rng.key(1))
    c = task.logits(params, x, rng.key(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(task.logits(params, x, None), task.logits(params, x, None))
