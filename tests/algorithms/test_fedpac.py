"""FedPAC (Xu et al. 2023, Alg. 1): the simplex QP and the statistics by hand, the server's classifier
combination, and without collaboration and alignment (λ = 0) a round is FedRep's."""

import torch

from pfl import rng
from pfl.algorithms import FedPAC, FedRep
from pfl.algorithms.base import ClientUpdate
from pfl.algorithms.fedpac import HEADS, combination_weights, simplex_qp, statistics
from pfl.algorithms.fedproto import COUNT, MEAN
from pfl.algorithms.local import LocalTrainer
from pfl.engine.round import client_updates
from pfl.execution import Backend
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.task import Task

from tests.helpers.engine import cohort


def test_simplex_qp_and_combination_weights_by_hand():
    P = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)  # interior: α_1 = (c - b) / (a + c - 2b)
    torch.testing.assert_close(simplex_qp(P), torch.tensor([2 / 3, 1 / 3], dtype=torch.float64))
    corner = torch.tensor([[1.0, 2.0], [2.0, 10.0]], dtype=torch.float64)  # unconstrained α_1 = 8/7 > 1
    torch.testing.assert_close(simplex_qp(corner), torch.tensor([1.0, 0.0], dtype=torch.float64))
    h = torch.ones(2, 3, 4)  # identical statistics: D = 0, so α_j ∝ 1 / V_j
    torch.testing.assert_close(combination_weights(h, torch.tensor([1.0, 3.0])), torch.tensor([[0.75, 0.25]] * 2),
                               atol=1e-6, rtol=0)


def test_statistics_by_hand():
    z = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0]])
    y = torch.tensor([0, 0, 1])
    h, v = statistics(z, y, torch.ones(3, dtype=torch.bool), classes=3)
    torch.testing.assert_close(h, torch.tensor([[2 / 3 * 2.0, 2 / 3 * 1.0], [0.0, 4 / 3], [0.0, 0.0]]))
    # V = (Σ_k p_k E‖z‖²|k - Σ_k p_k² ‖μ_k‖²) / n
    #   with E‖z‖²|0 = (1 + 13) / 2, E‖z‖²|1 = 16; ‖μ_0‖² = 5, ‖μ_1‖² = 16
    expected = (2 / 3 * 7 + 1 / 3 * 16 - (4 / 9 * 5 + 1 / 9 * 16)) / 3
    torch.testing.assert_close(v, torch.tensor(expected))


def test_server_gives_each_client_of_the_round_the_combined_classifier():
    alg = FedPAC()
    params = {MEAN: torch.zeros(3, 4), COUNT: torch.zeros(3), HEADS + "head.weight": torch.zeros(5, 3, 4),
              HEADS + "head.bias": torch.zeros(5, 3)}
    heads = {"head.weight": torch.stack([torch.ones(3, 4), 5 * torch.ones(3, 4)]),
             "head.bias": torch.stack([torch.zeros(3), torch.ones(3)])}
    extra = {"head": heads, "prototypes": torch.zeros(2, 3, 4), "counts": torch.ones(2, 3), "h": torch.ones(2, 3, 4),
             "v": torch.tensor([1.0, 3.0])}
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    alg.server_update(params, {}, opt, {}, ClientUpdate({}, torch.ones(2), {}, extra=extra, ids=torch.tensor([4, 1])))
    for i in (4, 1):  # α = (0.75, 0.25) for both
        torch.testing.assert_close(params[HEADS + "head.weight"][i], torch.full((3, 4), 2.0), atol=1e-5, rtol=0)
        torch.testing.assert_close(params[HEADS + "head.bias"][i], torch.full((3,), 0.25), atol=1e-5, rtol=0)
    assert params[HEADS + "head.weight"][[0, 2, 3]].abs().sum() == 0  # clients not in the round keep theirs


def test_without_collaboration_and_alignment_a_round_is_fedrep():
    torch.manual_seed(0)
    task = Task(MLP(5, 3, [4]))
    params, data = task.init_params(), cohort([6, 9, 4], seed=1)
    local = LocalTrainer(task, ClientSGD(lr=0.1, batch_size=3))
    alg = FedPAC(lam=0.0, collaborate=False, body_epochs=2)
    g = alg.init_population(alg.init_global(params), num_clients=3)
    g[HEADS + "head.weight"] = g[HEADS + "head.weight"] + torch.randn(3, 3, 4) * 0.3  # different heads per client
    keys = torch.stack([rng.key(0, i) for i in range(3)])
    ids = torch.arange(3)
    each = alg.broadcast_each(g, ids)
    pac = client_updates(alg, local, Backend("sequential"), alg.broadcast(g, keys[0], {}), data, keys, None, each)
    rep = client_updates(FedRep(head_epochs=1, body_epochs=2), local, Backend("sequential"),
                         FedRep().broadcast(params, keys[0], {}), data, keys, each)
    for k in rep.delta:
        torch.testing.assert_close(pac.delta[k], rep.delta[k], rtol=1e-5, atol=1e-6)
    for k in rep.state:
        torch.testing.assert_close(pac.extra["head"][k], rep.state[k], rtol=1e-5, atol=1e-6)
    # the statistics (under the received θ) agree between the backends
    vmap = client_updates(alg, local, Backend("vmap"), alg.broadcast(g, keys[0], {}), data, keys, None, each)
    torch.testing.assert_close(vmap.extra["h"], pac.extra["h"])
    torch.testing.assert_close(vmap.extra["v"], pac.extra["v"])
