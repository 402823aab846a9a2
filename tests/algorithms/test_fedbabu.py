"""FedBABU (Oh et al. 2022): the head never changes during training (even under a momentum server),
the body's step is taken with the frozen head, only the body travels; fine-tuning at personalization."""

import torch

from pfl import rng
from pfl.algorithms import FedBABU
from pfl.algorithms.base import nbytes
from pfl.algorithms.head_split import split_by_prefix
from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import ClientData
from pfl.engine.round import Server, run_round
from pfl.execution import Backend
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.task import Task

from tests.helpers.baselines import assert_backends_agree, full_batch_grad, updates
from tests.helpers.engine import cohort

LR = 0.1


def _setup(seed=0, batch=2, sizes=(5, 9, 3)):
    torch.manual_seed(seed)
    task = Task(MLP(5, 3, [4]))
    return task, task.init_params(), cohort(list(sizes)), LocalTrainer(task, ClientSGD(lr=LR, batch_size=batch))


def test_head_never_changes_during_training():
    task, params, data, local = _setup()
    alg = FedBABU(local_epochs=2)
    glob = {k: torch.nn.Parameter(v.clone()) for k, v in params.items()}
    server = Server(glob, torch.optim.SGD(glob.values(), lr=1.0, momentum=0.9), {})
    for r in range(3):
        keys = torch.stack([rng.key(r, i) for i in range(3)])
        out = run_round(alg, local, Backend("sequential"), server, data, keys, rng.key(r, 0x5E4D))
        assert not any(k.startswith("head.") for k in out.delta)
    body, head = split_by_prefix(params, "head")
    assert all(torch.equal(glob[k].detach(), head[k]) for k in head)
    assert not torch.equal(glob["hidden.0.weight"].detach(), body["hidden.0.weight"])
    assert (out.bytes_down, out.bytes_up) == (3 * nbytes(body), 3 * nbytes(body))


def test_body_step_with_the_frozen_head_by_hand():
    task, params, data, local = _setup(seed=1, batch=4, sizes=(4,))
    out = updates(FedBABU(), local, params, data)
    g = full_batch_grad(task, params, data.x[0], data.y[0])
    body, _ = split_by_prefix(params, "head")
    for k in body:
        torch.testing.assert_close(out.delta[k][0], LR * g[k])


def test_finetune_head_or_all():
    task, params, data, local = _setup(seed=2)
    n = int(data.n[1])
    d = ClientData(data.x[1, :n], data.y[1, :n], data.n[1])
    body, _ = split_by_prefix(params, "head")
    for mode, body_moves in (("head", False), ("all", True)):
        seen = []
        FedBABU(finetune=mode).adapt(local, params, d, rng.key(0), 1, lambda e, p: seen.append(p))
        assert not torch.equal(seen[0]["head.weight"], params["head.weight"])
        assert (not torch.equal(seen[0]["hidden.0.weight"], body["hidden.0.weight"])) == body_moves


def test_vmap_equals_sequential():
    task, params, data, local = _setup(seed=3)
    assert_backends_agree(FedBABU(local_epochs=2), local, params, data)
