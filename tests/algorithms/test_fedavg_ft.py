"""FedAvg-FT = Jiang et al.'s Personalized FedAvg (Alg. 2): FedAvg(E) with server momentum SGD,
then Reptile(K) with server Adam, as two engine stages."""

import torch
from omegaconf import OmegaConf, open_dict

from pfl.algorithms import FedAvg, FedAvgFT, Reptile
from pfl.run import build_stages, load_global_params, train
from tests.helpers import compose_cfg


def test_defaults_are_algorithm_2():
    (n1, fedavg, sgd, r1), (n2, reptile, adam, r2) = FedAvgFT().stages(None, 70)
    assert (n1, n2, r1, r2) == ("", "_finetune", 50, 20)  # the last 2/7: Jiang's 200 rounds after 500
    assert isinstance(fedavg, FedAvg) and type(reptile) is Reptile
    assert fedavg.local_epochs == 10 and reptile.local_steps == 10
    p = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(sgd(p), torch.optim.SGD) and sgd(p).defaults["lr"] == 1.0 and sgd(p).defaults["momentum"] == 0.9
    assert isinstance(adam(p), torch.optim.Adam) and adam(p).defaults["lr"] == 0.001


def test_split_point_and_empty_stages():
    assert FedAvgFT().split(100) == (71, 29)
    assert FedAvgFT(finetune_rounds=30).split(100) == (70, 30)
    only_ft = FedAvgFT(finetune_rounds=500).stages(None, 100)
    assert [(s[0], s[3]) for s in only_ft] == [("_finetune", 100)]
    assert [(s[0], s[3]) for s in FedAvgFT(finetune_fraction=0).stages(None, 9)] == [("", 9)]
    configured = object()
    assert {s[2] for s in FedAvgFT(server_optimizers="configured").stages(configured, 10)} == {configured}


def _stage(name, rounds, alg, opt):
    return {"name": name, "rounds": rounds, "algorithm": alg, "server_opt": {"_partial_": True, **opt}}


def test_engine_run_equals_fedavg_momentum_then_reptile_adam(tmp_path):
    """algorithm=fedavg_ft is, bit for bit, the staged run FedAvg(E=2) + SGD(1, 0.9) for 2 rounds,
    then Reptile(K=3) + Adam(0.001) for 2 rounds from that state (same seed, cohorts, keys)."""
    run = ["rounds=4", "eval_every=4", "checkpoint_every=4", "engine.count_flops=true"]
    ft = compose_cfg([*run, "algorithm=fedavg_ft", "algorithm.local_epochs=2", "algorithm.finetune_steps=3",
                      "algorithm.finetune_rounds=2"])
    assert [(s.name, s.rounds) for s in build_stages(ft)] == [("fedavg_ft", 2), ("fedavg_ft_finetune", 2)]
    ref = compose_cfg([*run, "algorithm=fedavg", "server_opt=adam"])  # server_opt: replaced per stage below
    with open_dict(ref):
        ref.stages = OmegaConf.create([
            _stage("fedavg_ft", 2, {"_target_": "pfl.algorithms.FedAvg", "local_epochs": 2},
                   {"_target_": "torch.optim.SGD", "lr": 1.0, "momentum": 0.9}),
            _stage("fedavg_ft_finetune", 2, {"_target_": "pfl.algorithms.Reptile", "local_steps": 3},
                   {"_target_": "torch.optim.Adam", "lr": 0.001})])
    a, b = train(ft, tmp_path / "ft"), train(ref, tmp_path / "ref")
    pa, pb = load_global_params(tmp_path / "ft"), load_global_params(tmp_path / "ref")
    assert set(pa) == set(pb)
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k
    assert a["personalized_accuracy"] == b["personalized_accuracy"] and a["flops_per_round"] == b["flops_per_round"]
    assert set(a["flops_per_round"]) == {"fedavg_ft", "fedavg_ft_finetune"}  # each stage's FLOPs measured
    assert a["algorithm"] == "fedavg_ft"
