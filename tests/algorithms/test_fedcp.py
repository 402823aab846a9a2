"""FedCP (Zhang et al. 2023, Alg. 1): MMD² by hand, the policy's split of a feature between the two heads
by hand, and with the policy fixed to the personal part and λ = 0 a round is FedPer's."""

import math

import torch

from pfl import rng
from pfl.algorithms import FedCP, FedPer
from pfl.algorithms.fedcp import BANDWIDTHS, CPN, OWN, mmd2
from pfl.algorithms.head_split import HeadSplit
from pfl.algorithms.local import LocalTrainer
from pfl.engine.round import client_updates
from pfl.execution import Backend
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.task import Task

from tests.helpers.baselines import stacked_state
from tests.helpers.engine import cohort


def _setup():
    torch.manual_seed(0)
    task = Task(MLP(5, 3, [4]))
    return task, task.init_params(), LocalTrainer(task, ClientSGD(lr=0.1, batch_size=3))


def _fixed_policy(g, personal: float, common: float):
    """The CPN made constant: zero weights, LayerNorm bias (personal, common) per feature dimension."""
    d = g[CPN + "fc.weight"].shape[1]
    return {**g, CPN + "fc.weight": torch.zeros(2 * d, d), CPN + "fc.bias": torch.zeros(2 * d),
            CPN + "norm.bias": torch.cat([torch.full((d,), personal), torch.full((d,), common)])}


def test_mmd_by_hand():
    x, y = torch.tensor([[0.0], [9.0]]), torch.tensor([[1.0], [-9.0]])
    one = torch.tensor([True, False])  # the second rows are padding
    expected = 2 * len(BANDWIDTHS) - 2 * sum(math.exp(-0.5 / s) for s in BANDWIDTHS)
    torch.testing.assert_close(mmd2(x, y, one), torch.tensor(expected))
    assert float(mmd2(x, x, torch.ones(2, dtype=torch.bool))) == 0.0


def test_policy_splits_each_feature_between_the_heads_by_hand():
    task, params, local = _setup()
    alg = FedCP()
    g = _fixed_policy(alg.init_global(params), 0.0, math.log(3.0))  # relu keeps both: s = (1/4, 3/4)
    own = {OWN + "head.weight": torch.randn(3, 4), OWN + "head.bias": torch.randn(3)}
    p = alg.personal_model(g, own)
    hs = HeadSplit(task, "head")
    x = torch.randn(2, 5)
    logits, z = alg.forward(hs, p, x, None)
    expected = (z / 4) @ own[OWN + "head.weight"].T + own[OWN + "head.bias"] + (3 * z / 4) @ params["head.weight"].T \
        + params["head.bias"]
    torch.testing.assert_close(logits, expected)
    noisy, _ = alg.forward(hs, p, x, rng.key(1))  # training draws Gumbel noise: another split
    assert not torch.allclose(noisy, logits)


def test_personal_policy_without_mmd_is_fedper():
    """s_p = 1: logits = W^p h + b^p + b^g with W^g frozen, i.e. FedPer's head with the constant b^g in its bias."""
    task, params, local = _setup()
    alg = FedCP(lam=0.0, local_epochs=2)
    g = _fixed_policy(alg.init_global(params), 1e4, 0.0)  # s_p = 1 (s_g underflows to 0)
    state = stacked_state(alg, g, 3)
    state[OWN + "head.bias"] = torch.zeros_like(state[OWN + "head.bias"])  # b^p + b^g = FedPer's initial bias
    data = cohort([6, 9, 4], seed=2)
    keys = torch.stack([rng.key(0, i) for i in range(3)])
    cp = client_updates(alg, local, Backend("sequential"), g, data, keys, state)
    per_alg = FedPer(local_epochs=2)
    per = client_updates(per_alg, local, Backend("sequential"), per_alg.broadcast(params, keys[0], {}), data, keys,
                         stacked_state(per_alg, params, 3))
    for k in per.delta:
        torch.testing.assert_close(cp.delta[k], per.delta[k])
    torch.testing.assert_close(cp.state[OWN + "head.weight"], per.state["head.weight"])
    torch.testing.assert_close(cp.state[OWN + "head.bias"] + params["head.bias"], per.state["head.bias"])
    # the client's share of the global head is its own (s̄_p = 1): Δ = W^g - W^p
    torch.testing.assert_close(cp.delta["head.weight"], params["head.weight"] - per.state["head.weight"])
    vmap = client_updates(alg, local, Backend("vmap"), g, data, keys, state)
    for k in cp.delta:
        torch.testing.assert_close(vmap.delta[k], cp.delta[k], rtol=1e-5, atol=1e-6)
