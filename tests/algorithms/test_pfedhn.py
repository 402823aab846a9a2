"""pFedHN (Shamsian et al. 2021, Alg. 1): a hypernetwork that ignores the embedding is Reptile(K) with
server SGD, the server's chain-rule step by hand, one generated model per client (bytes: one model each way)."""

import torch

from pfl import rng
from pfl.algorithms import PFedHN, Reptile
from pfl.algorithms.base import ClientUpdate, nbytes
from pfl.algorithms.local import LocalTrainer
from pfl.algorithms.pfedhn import EMBED, MLP as HN_MLP, OUT
from pfl.engine.round import Server, run_round
from pfl.execution import Backend
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.task import Task

from tests.helpers.engine import cohort

LR = 0.5


def _setup(seed=0):
    torch.manual_seed(seed)
    task = Task(MLP(5, 3, [4]))
    return task, task.init_params(), cohort([6, 9, 4], seed=seed), LocalTrainer(task, ClientSGD(lr=0.1, batch_size=3))


def _server(alg, params):
    p = {k: torch.nn.Parameter(v.clone()) for k, v in params.items()}
    return Server(p, alg.server_optimizer([{"params": list(p.values())}], None), {})


def _round(alg, server, local, data, r, ids):
    keys = torch.stack([rng.key(r, int(i)) for i in ids])
    return run_round(alg, local, Backend("sequential"), server, data, keys, rng.key(r, 0x5E4D), ids=ids)


def test_a_hypernetwork_that_ignores_the_embedding_is_reptile():
    task, params, data, local = _setup()
    alg = PFedHN(local_steps=3, hidden=4, n_hidden=1, hn_lr=LR, hn_momentum=0.0, hn_weight_decay=0.0)
    g = alg.init_population(alg.init_global(params), num_clients=7)
    g = {k: torch.zeros_like(v) if k.startswith(HN_MLP) or k.endswith(".w") else v for k, v in g.items()}
    hn = _server(alg, g)
    ref = Server({k: torch.nn.Parameter(v.clone()) for k, v in params.items()}, None, {})
    ref.optimizer = torch.optim.SGD(ref.params.values(), lr=LR)
    for r, ids in enumerate([torch.tensor([0, 3, 5]), torch.tensor([1, 2, 6])]):
        _round(alg, hn, local, data, r, ids)
        keys = torch.stack([rng.key(r, int(i)) for i in ids])
        run_round(Reptile(local_steps=3), local, Backend("sequential"), ref, data, keys, rng.key(r, 0x5E4D))
    models = alg.broadcast_each({k: v.detach() for k, v in hn.params.items()}, torch.arange(7))
    for k in params:
        torch.testing.assert_close(hn.params[f"{OUT}{k}.b"].detach(), ref.params[k].detach())
        assert all(torch.equal(models[k][i], hn.params[f"{OUT}{k}.b"].detach()) for i in range(7))
        assert torch.count_nonzero(hn.params[f"{OUT}{k}.w"]) == 0  # still ignores the embedding


def test_server_step_is_the_chain_rule_by_hand():
    task, params, _, _ = _setup(seed=1)
    alg = PFedHN(hidden=3, n_hidden=0, hn_lr=LR, hn_momentum=0.0, hn_weight_decay=0.0)  # θ = W (A v + c) + b
    g = alg.init_population(alg.init_global(params), num_clients=4)
    gen = torch.Generator().manual_seed(2)
    g = {k: torch.randn(v.shape, generator=gen) for k, v in g.items()}
    ids = torch.tensor([3, 1])
    delta = {k: torch.randn(2, *v.shape, generator=gen) for k, v in params.items()}
    server = _server(alg, g)
    alg.server_update(server.params, {}, server.optimizer, {}, ClientUpdate(delta, torch.ones(2), {}, ids=ids))
    A, c, v = g[f"{HN_MLP}0.weight"], g[f"{HN_MLP}0.bias"], g[EMBED]
    a = v[ids] @ A.T + c  # [2, H]
    grad_a = torch.zeros(2, 3)
    for k in params:
        W = g[f"{OUT}{k}.w"]
        dW = torch.einsum("c...,ch->...h", delta[k], a) / 2
        torch.testing.assert_close(server.params[f"{OUT}{k}.w"].detach(), W - LR * dW)
        torch.testing.assert_close(server.params[f"{OUT}{k}.b"].detach(), g[f"{OUT}{k}.b"] - LR * delta[k].mean(0))
        grad_a += torch.einsum("c...,...h->ch", delta[k], W) / 2
    expected = v.clone()
    expected[ids] -= LR * grad_a @ A
    torch.testing.assert_close(server.params[EMBED].detach(), expected)  # only the cohort's rows move
    torch.testing.assert_close(server.params[f"{HN_MLP}0.bias"].detach(), c - LR * grad_a.sum(0))


def test_each_client_gets_its_own_model_and_bytes_are_one_model_each_way():
    task, params, data, local = _setup(seed=2)
    alg = PFedHN(local_steps=2, hidden=4, n_hidden=1)
    g = alg.init_population(alg.init_global(params), num_clients=5)
    first = alg.broadcast_each(g, torch.arange(5))
    assert all(torch.equal(first[k][i], params[k]) for k in params for i in range(5))  # W = 0: the model's init
    server = _server(alg, g)
    out = _round(alg, server, local, data, 0, torch.tensor([0, 2, 4]))
    assert (out.bytes_down, out.bytes_up) == (3 * nbytes(params), 3 * nbytes(params))
    models = alg.broadcast_each({k: v.detach() for k, v in server.params.items()}, torch.tensor([0, 2]))
    assert not torch.allclose(models["head.weight"][0], models["head.weight"][1])  # personalized after a step
