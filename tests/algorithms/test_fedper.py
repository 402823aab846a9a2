"""FedPer (Arivazhagan et al. 2019): only the body travels; each client keeps its own head;
a client's round is FedAvg's local training of (global body, own head); training clients are
personalized from their own head, held-out ones from the initial head."""

import torch

from pfl import rng
from pfl.algorithms import FedAvg, FedPer
from pfl.algorithms.base import nbytes
from pfl.algorithms.head_split import split_by_prefix
from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import ClientData, Population
from pfl.evaluation.personalize import personalize
from pfl.execution import Backend
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.task import Task

from tests.helpers.baselines import assert_backends_agree, perturbed, updates
from tests.helpers.engine import cohort


def _setup(seed=0, sizes=(5, 9, 3)):
    torch.manual_seed(seed)
    task = Task(MLP(5, 3, [4]))
    return task, task.init_params(), cohort(list(sizes)), LocalTrainer(task, ClientSGD(lr=0.1, batch_size=2))


def _heads(params, num):
    heads = split_by_prefix(params, "head")[1]
    return {k: torch.stack([perturbed(heads, 10 + i, 0.5)[k] for i in range(num)]) for k in heads}


def test_round_is_fedavg_on_the_clients_own_model_and_sends_only_the_body():
    task, params, data, local = _setup()
    alg = FedPer(local_epochs=2)
    heads = _heads(params, 3)
    out = updates(alg, local, params, data, state=heads)
    body, _ = split_by_prefix(params, "head")
    assert set(out.delta) == set(body) and set(out.state) == set(heads)
    assert set(alg.broadcast(params, rng.key(0), {})) == set(body)
    for i in range(3):  # FedAvg(E) from (body, head_i), one client at a time
        own = {**params, **{k: v[i] for k, v in heads.items()}}
        ref = updates(FedAvg(local_epochs=2), local, own, data, key_seed=0)
        for k in body:
            torch.testing.assert_close(out.delta[k][i], ref.delta[k][i])
        for k in heads:
            torch.testing.assert_close(out.state[k][i], own[k] - ref.delta[k][i])
    down, up = alg.bytes_exchanged(alg.broadcast(params, rng.key(0), {}), out)
    assert down == up == nbytes(body) < nbytes(params)


def test_training_clients_are_evaluated_with_their_own_head():
    task, params, _, local = _setup(seed=1)
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(n, 5, generator=g) for n in (6, 8)]
    ys = [torch.randint(0, 3, (n,), generator=g) for n in (6, 8)]
    pop = Population.from_clients(["a", "b"], xs, ys, xs, ys)
    heads = _heads(params, 2)
    alg = FedPer()
    res = {b: personalize(alg, local, params, pop, torch.arange(2), 1, rng.key(3), Backend(b), state=heads)
           for b in ("vmap", "sequential")}
    torch.testing.assert_close(res["vmap"].correct, res["sequential"].correct)
    held = personalize(alg, local, params, pop, torch.arange(2), 1, rng.key(3), Backend("sequential"))
    for i in range(2):
        t = pop.test.gather(torch.tensor([i]))
        one = ClientData(t.x[0], t.y[0], t.n[0])
        own = {**params, **{k: v[i] for k, v in heads.items()}}  # k = 0: the global body with client i's head
        assert int(res["sequential"].correct[i, 0]) == int(local.evaluate(own, one)[0])
        assert int(held.correct[i, 0]) == int(local.evaluate(params, one)[0])  # held-out: the initial head

def test_vmap_equals_sequential():
    task, params, data, local = _setup(seed=2)
    assert_backends_agree(FedPer(local_epochs=2), local, params, data, _heads(params, 3))
