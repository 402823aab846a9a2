"""kNN-Per (Marfoq et al. 2022, Eq. (3)-(4)): the kernel vote on three stored points by hand, λ = 0 is
the global model, λ = 1 with k = 1 recalls the training labels, no gradient step in personalization."""

import math

import torch

from pfl import rng
from pfl.algorithms import FedAvg, KNNPer
from pfl.algorithms.knn_per import knn_probs
from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import ClientData
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.task import Task

from tests.helpers.engine import cohort, run_round


def _client(sizes=(12, 7), i=0):
    torch.manual_seed(0)
    task = Task(MLP(5, 3, [8]))
    data = cohort(list(sizes), seed=3)
    n = int(data.n[i])
    return task, task.init_params(), ClientData(data.x[i, :n], data.y[i, :n], data.n[i]), \
        LocalTrainer(task, ClientSGD(lr=0.1, batch_size=4))


def test_kernel_vote_on_three_points_by_hand():
    memory = torch.tensor([[0.0], [1.0], [3.0], [0.4]])
    labels = torch.tensor([0, 1, 1, 2])
    valid = torch.tensor([True, True, True, False])  # the 4th (the closest) is padding: never a neighbour
    z = torch.tensor([[0.4]])  # squared distances 0.16, 0.36, 6.76
    p2 = knn_probs(z, memory, labels, valid, k=2, sigma=1.0, classes=3)
    w0, w1 = math.exp(-0.16), math.exp(-0.36)
    torch.testing.assert_close(p2, torch.tensor([[w0 / (w0 + w1), w1 / (w0 + w1), 0.0]]))
    p3 = knn_probs(z, memory, labels, valid, k=3, sigma=0.5, classes=3)  # σ = 0.5: exp(-d / 0.5)
    w = [math.exp(-0.32), math.exp(-0.72), math.exp(-13.52)]
    torch.testing.assert_close(p3, torch.tensor([[w[0] / sum(w), (w[1] + w[2]) / sum(w), 0.0]]))
    none = knn_probs(z, memory, labels, torch.zeros(4, dtype=torch.bool), k=2, sigma=1.0, classes=3)
    assert torch.equal(none, torch.zeros(1, 3))  # no valid entry: no vote


def test_lambda_zero_is_the_global_model_and_one_recalls_the_labels():
    task, params, data, local = _client()
    glob = local.evaluate(params, data)
    assert [int(t) for t in KNNPer(lam=0.0).evaluate(local, params, data, data)] == [int(t) for t in glob]
    correct, counted = KNNPer(lam=1.0, neighbours=1).evaluate(local, params, data, data)
    assert int(correct) == int(counted) == int(data.n)  # each test point is its own nearest neighbour
    assert int(glob[0]) < int(data.n)  # (the untrained global model is not perfect: the memory did it)


def test_personalization_takes_no_step_and_training_is_fedavg():
    task, params, data, local = _client()
    seen = []
    KNNPer().adapt(local, params, data, rng.key(0), 3, lambda e, p: seen.append((e, p)))
    assert [e for e, _ in seen] == [1, 2, 3]
    assert all(torch.equal(p[k], params[k]) for _, p in seen for k in params)
    cohort_data = cohort([6, 9], seed=4)
    a, b = run_round(KNNPer(), local, params, cohort_data), run_round(FedAvg(), local, params, cohort_data)
    assert all(torch.equal(a.delta[k], b.delta[k]) for k in params)
