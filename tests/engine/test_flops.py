"""`flops_per_round` is counted per client (sequential) or per chunk (vmap) and summed: the same
total as one FlopCounterMode around the whole cohort, which held every client's memory until it
exited (pfl.execution.counting_flops)."""

import torch
from torch.utils.flop_counter import FlopCounterMode

from pfl import rng
from pfl.algorithms import FedAvg
from pfl.algorithms.local import LocalTrainer
from pfl.engine.round import client_updates
from pfl.execution import Backend, counting_flops
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.task import Task
from tests.helpers.engine import cohort


def _setup(sizes):
    local = LocalTrainer(Task(MLP(5, 3, [8])), ClientSGD(lr=0.1, batch_size=4))
    params = local.task.init_params()
    keys = torch.stack([rng.key(0, i) for i in range(len(sizes))])
    return FedAvg(local_epochs=2), local, params, cohort(sizes), keys


def test_counted_per_client_equals_one_counter_around_the_cohort_and_vmap():
    alg, local, params, data, keys = _setup([8, 8, 8])  # equal sizes: vmap runs no padded steps
    with FlopCounterMode(display=False) as whole:
        client_updates(alg, local, Backend("sequential"), params, data, keys)
    counts = {}
    for kind, chunk in (("sequential", None), ("vmap", None), ("vmap", 2)):
        with counting_flops() as total:
            client_updates(alg, local, Backend(kind, chunk_size=chunk), params, data, keys)
        counts[(kind, chunk)] = total[0]
    assert whole.get_total_flops() > 0
    assert set(counts.values()) == {whole.get_total_flops()}, counts


def test_nothing_is_counted_outside_the_block_and_each_client_adds_its_own():
    alg, local, params, data, keys = _setup([4, 8, 12])
    with counting_flops() as total:
        client_updates(alg, local, Backend("sequential"), params, data, keys)
    per_client = []
    for i, n in enumerate([4, 8, 12]):  # FLOPs depend on shapes and steps, not on the values
        with counting_flops() as t:
            client_updates(alg, local, Backend("sequential"), params, cohort([n]), keys[i:i + 1])
        per_client.append(t[0])
    assert per_client[0] < per_client[1] < per_client[2]  # more examples, more steps
    assert total[0] == sum(per_client)
    client_updates(alg, local, Backend("sequential"), params, data, keys)  # no block: no counter runs
    assert total[0] == sum(per_client)


def test_engine_count_flops_false_counts_nothing_and_changes_no_result(tmp_path):
    """engine.count_flops=false (the tiny test runs' setting): no FLOPs in summary.json, the rounds-to-target
    entries say null rather than 0, and every accuracy equals the counted run's."""
    from pfl.run import train
    from tests.helpers import compose_cfg

    on, off = (train(compose_cfg([f"engine.count_flops={v}"]), tmp_path / v)
               for v in ("true", "false"))
    assert on["flops_per_round"]["fedavg"] > 0 and on["flops_total_estimate"] == 4 * on["flops_per_round"]["fedavg"]
    assert off["flops_per_round"] == {} and off["flops_total_estimate"] is None
    assert off["personalized_accuracy"] == on["personalized_accuracy"]
    assert off["initial_accuracy"] == on["initial_accuracy"]
    hit = [k for k, e in on["own_target"].items() if isinstance(e, dict) and e["round"] is not None]
    assert hit and all(on["own_target"][k]["flops"] > 0 and off["own_target"][k]["flops"] is None for k in hit)
