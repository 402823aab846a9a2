"""LG-FedAvg (Liang et al. 2020): only the head travels; each client keeps its own body; a round is
FedAvg's local training of (own body, global head)."""

import torch

from pfl import rng
from pfl.algorithms import FedAvg, LGFedAvg
from pfl.algorithms.base import nbytes
from pfl.algorithms.head_split import split_by_prefix
from pfl.algorithms.local import LocalTrainer
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.task import Task

from tests.helpers.baselines import assert_backends_agree, perturbed, updates
from tests.helpers.engine import cohort


def _setup(seed=0, sizes=(5, 9, 3)):
    torch.manual_seed(seed)
    task = Task(MLP(5, 3, [4]))
    return task, task.init_params(), cohort(list(sizes)), LocalTrainer(task, ClientSGD(lr=0.1, batch_size=2))


def _bodies(params, num):
    body = split_by_prefix(params, "head")[0]
    return {k: torch.stack([perturbed(body, 20 + i, 0.5)[k] for i in range(num)]) for k in body}


def test_round_is_fedavg_on_the_clients_own_body_and_sends_only_the_head():
    task, params, data, local = _setup()
    alg = LGFedAvg(local_epochs=2)
    bodies = _bodies(params, 3)
    out = updates(alg, local, params, data, state=bodies)
    _, head = split_by_prefix(params, "head")
    assert set(out.delta) == set(head) and set(out.state) == set(bodies)
    for i in range(3):
        own = {**params, **{k: v[i] for k, v in bodies.items()}}
        ref = updates(FedAvg(local_epochs=2), local, own, data)
        for k in head:
            torch.testing.assert_close(out.delta[k][i], ref.delta[k][i])
        for k in bodies:
            torch.testing.assert_close(out.state[k][i], own[k] - ref.delta[k][i])
    sent = alg.broadcast(params, rng.key(0), {})
    assert set(sent) == set(head)
    assert alg.bytes_exchanged(sent, out) == (nbytes(head), nbytes(head))
    own0 = {k: v[0] for k, v in bodies.items()}
    assert torch.equal(alg.personal_model(params, own0)["hidden.0.weight"], own0["hidden.0.weight"])


def test_vmap_equals_sequential():
    task, params, data, local = _setup(seed=2)
    assert_backends_agree(LGFedAvg(local_epochs=2), local, params, data, _bodies(params, 3))
