"""FedAvg-FT = FedAvg(E) rounds, then Reptile(K) rounds (Jiang et al.'s method), by hand."""

import torch

from pfl import rng
from pfl.algorithms import FedAvg, FedAvgFT, Reptile
from pfl.algorithms.local import LocalTrainer
from pfl.data.synthetic import load_synthetic
from pfl.engine.round import Server, run_round
from pfl.execution import Backend
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.task import Task


def _server(init, lr=0.7, momentum=0.5):
    params = {k: torch.nn.Parameter(v.clone()) for k, v in init.items()}
    return Server(params, torch.optim.SGD(params.values(), lr=lr, momentum=momentum))


def test_fedavg_then_reptile_by_hand():
    torch.manual_seed(0)
    data = load_synthetic(num_clients=12, train_clients=8, min_examples=10, max_examples=40, dim=8, num_classes=4, seed=2)
    local = LocalTrainer(Task(MLP(8, 4, [6])), ClientSGD(lr=0.05, batch_size=5))
    init = local.task.init_params()
    ft = FedAvgFT(local_epochs=2, finetune_steps=3, finetune_rounds=2)
    a = _server(init)
    a.state = ft.init_server_state(init, num_clients=8, rounds=5)
    b = _server(init)  # the same server optimizer throughout, as FedAvgFT uses one
    stages = [FedAvg(local_epochs=2)] * 3 + [Reptile(local_steps=3)] * 2
    flags = []
    for r, alg in enumerate(stages):
        ids = torch.randperm(8, generator=torch.Generator().manual_seed(r))[:4]
        cohort = data.train.train.gather(ids)
        keys = torch.stack([rng.key(0, r, int(i)) for i in ids])
        out = run_round(ft, local, Backend("vmap"), a, cohort, keys, rng.key(0, r, 1))
        run_round(alg, local, Backend("vmap"), b, cohort, keys, rng.key(0, r, 1))
        flags.append(out.server_metrics["finetuning"])
        for k in init:
            torch.testing.assert_close(a.params[k], b.params[k], rtol=0, atol=0)
    assert flags == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert a.state["round"] == 5


def test_finetune_stage_length_from_the_runs_rounds():
    init = {"w": torch.zeros(2)}
    assert FedAvgFT().init_server_state(init, rounds=100)["switch"] == 80  # the last 20%
    assert FedAvgFT(finetune_rounds=30).init_server_state(init, rounds=100)["switch"] == 70
    assert FedAvgFT(finetune_rounds=500).init_server_state(init, rounds=100)["switch"] == 0
