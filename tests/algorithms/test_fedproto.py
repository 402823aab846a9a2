"""FedProto (Tan et al. 2022, Alg. 1): prototype averaging by class counts by hand, the local prototypes
are per-class mean features, λ = 0 is local training alone, bytes are the prototypes, backends agree."""

import torch

from pfl import rng
from pfl.algorithms import FedAvg, FedProto
from pfl.algorithms.base import ClientUpdate
from pfl.algorithms.fedproto import COUNT, MEAN, PRESENT, average_prototypes
from pfl.algorithms.head_split import HeadSplit
from pfl.algorithms.local import LocalTrainer
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.task import Task

from tests.helpers.baselines import assert_backends_agree, stacked_state, updates
from tests.helpers.engine import cohort


def _setup(seed=0, sizes=(6, 9, 4)):
    torch.manual_seed(seed)
    task = Task(MLP(5, 3, [4]))  # K = 3 classes, d = 4 features
    return task, task.init_params(), cohort(list(sizes), seed=seed), LocalTrainer(task, ClientSGD(lr=0.1, batch_size=3))


def _with_prototypes(alg, params):
    g = alg.init_global(params)
    g[MEAN] = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 10
    g[COUNT] = torch.tensor([2.0, 0.0, 5.0])  # class 1 has no global prototype
    return g


def test_prototypes_are_averaged_by_class_counts():
    protos = torch.tensor([[[1.0, 1.0], [0.0, 0.0], [2.0, 0.0], [0.0, 0.0]],
                           [[3.0, 1.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]])
    counts = torch.tensor([[2.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    mean, seen = average_prototypes(protos, counts, "counts")
    torch.testing.assert_close(mean[:3], torch.tensor([[5 / 3, 1.0], [1.0, 1.0], [2.0, 0.0]]))
    assert seen.tolist() == [True, True, True, False]
    uniform, _ = average_prototypes(protos, counts, "clients")
    torch.testing.assert_close(uniform[0], torch.tensor([2.0, 1.0]))
    # the server: classes of the round replaced, class 3 (no client holds it) keeps its prototype
    alg = FedProto()
    params = {MEAN: torch.full((4, 2), 7.0), COUNT: torch.tensor([1.0, 1.0, 1.0, 9.0])}
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    up = ClientUpdate({}, torch.ones(2), {}, {}, {"prototypes": protos, "counts": counts})
    alg.server_update(params, {}, opt, {}, up)
    torch.testing.assert_close(params[MEAN], torch.cat([mean[:3], torch.full((1, 2), 7.0)]))
    assert params[COUNT].tolist() == [3.0, 1.0, 1.0, 9.0]


def test_local_prototypes_are_class_means_and_lambda_zero_is_local_training():
    task, params, data, local = _setup()
    g = _with_prototypes(FedProto(lam=0.0), params)
    out = updates(FedProto(lam=0.0, local_epochs=2), local, g, data, state=stacked_state(FedProto(), g, 3))
    ref = updates(FedAvg(local_epochs=2), local, params, data)  # local training from the same model
    for k in params:
        torch.testing.assert_close(out.state[k], params[k] - ref.delta[k])
    assert out.delta == {}
    hs = HeadSplit(task, "head")
    for i in range(3):
        n = int(data.n[i])
        z = hs.features({k: v[i] for k, v in out.state.items()}, data.x[i, :n], None)
        for j in range(3):
            rows = data.y[i, :n] == j
            assert int(out.extra["counts"][i, j]) == int(rows.sum())
            expected = z[rows].mean(0) if rows.any() else torch.zeros(4)
            torch.testing.assert_close(out.extra["prototypes"][i, j], expected)
    pulled = updates(FedProto(lam=1.0, local_epochs=2), local, g, data, state=stacked_state(FedProto(), g, 3))
    assert not torch.allclose(pulled.state["hidden.0.weight"], out.state["hidden.0.weight"])  # λ > 0 acts


def test_bytes_are_the_prototypes_and_backends_agree():
    task, params, data, local = _setup(seed=1)
    alg = FedProto()
    g = _with_prototypes(alg, params)
    out = assert_backends_agree(alg, local, g, data, stacked_state(alg, g, 3))
    sent = alg.broadcast(g, rng.key(0), {})
    assert sent[PRESENT].tolist() == [True, False, True]
    assert alg.bytes_exchanged(sent, out) == (3 * 4 * 4 + 3, 3 * 4 * 4 + 3 * 4)
