"""replicas=R: one run that equals R separate runs with seeds seed..seed+R-1 (pfl.engine.replicas)."""

import json

import pytest
import torch
from omegaconf import OmegaConf

from pfl.config.errors import ConfigError
from pfl.report import seeds
from pfl.run import train
from tests.helpers import compose_cfg
from tests.helpers.runs import close_tree, crash_at

# smaller than TINY: two rounds, one evaluation, no checkpoints
SMALL = ["rounds=2", "eval_every=2", "checkpoint_every=0", "personalization.curve_epochs=1",
         "personalization.epochs=[1]", "personalization.train_clients=3"]
def _with_seed(cfg, seed: int):
    """The same composed config with another seed (a separate run; the data set's seed follows)."""
    out = cfg.copy()
    OmegaConf.update(out, "seed", seed)
    return out


KEYS = ("initial_accuracy", "personalized_accuracy", "personalization_curve", "fraction_worse", "train_clients")


@pytest.mark.parametrize("replicas, extra", [
    # FedAvg with server optimizer state and dropout keys; vmap chunks of 5 of the 3 x 4 clients span replicas
    (3, ["server_opt=adam", "model.dropout=0.2", "engine.chunk_size=5"]),
    # per-client state, read at evaluation; each replica's local-only reference from its own initial model
    (2, ["algorithm=ditto", "personalization.local_baseline=true", "personalization.local_epochs=2"]),
], ids=["fedavg_adam_dropout", "ditto"])
def test_replicas_equal_separate_seeded_runs(tmp_path, replicas, extra):
    cfg = compose_cfg(SMALL + ["engine.backend=vmap", "seed=5"] + extra)
    rep = train(compose_cfg(SMALL + ["engine.backend=vmap", "seed=5", f"replicas={replicas}"] + extra), tmp_path / "rep")
    assert rep["seeds"] == list(range(5, 5 + replicas)) and len(rep["replicas"]) == replicas
    singles = [train(_with_seed(cfg, 5 + r), tmp_path / f"seed{r}") for r in range(replicas)]
    for part, single in zip(rep["replicas"], singles):
        assert part["seed"] == single["seed"]
        for k in KEYS:
            close_tree(part[k], single[k], k)
        assert part["bytes"] == single["bytes"]
        close_tree(part["local_baseline"], single["local_baseline"], "local_baseline")
    # the replicas are different runs, and the headline numbers are their mean and sample std
    accs = [s["train_clients"]["initial_accuracy"] for s in singles]
    assert len(set(accs)) > 1
    assert rep["mean"]["train_clients.initial_accuracy"] == pytest.approx(sum(accs) / len(accs))
    assert rep["std"]["train_clients.initial_accuracy"] == pytest.approx(torch.tensor(accs).std().item())
    assert rep["train_clients"]["initial_accuracy"] == pytest.approx(sum(accs) / len(accs))
    # pfl.report.seeds counts the replicated run as R runs: the same table as the separate runs
    a = seeds.aggregate([tmp_path / "rep"])[0]["stats"]
    b = seeds.aggregate([tmp_path / f"seed{r}" for r in range(replicas)])[0]["stats"]
    for k in ("initial_accuracy", "personalized_accuracy.1", "train_clients.initial_accuracy"):
        assert a[k]["n"] == b[k]["n"] == replicas
        assert a[k]["mean"] == pytest.approx(b[k]["mean"], abs=1e-5) and a[k]["std"] == pytest.approx(b[k]["std"], abs=1e-5)
    g = seeds.aggregate([tmp_path / "rep"])[0]  # the first paper's Figure 1 bands: per replica from its columns
    bands = seeds.band_series(g["runs"], "heldout/pers_acc_1", g["replica"])
    ref = seeds.band_series([tmp_path / f"seed{r}" for r in range(replicas)], "heldout/pers_acc_1")
    assert bands[0] == ref[0] and bands[1] == pytest.approx(ref[1], abs=1e-5) and bands[2] == pytest.approx(ref[2], abs=1e-5)
    row = json.loads((tmp_path / "rep" / "summary.json").read_text())["final"]
    assert row["replica1/heldout/pers_acc_1"] == pytest.approx(singles[1]["final"]["heldout/pers_acc_1"], abs=1e-5)


@pytest.mark.slow  # three runs
def test_replicated_run_resumes_to_the_uninterrupted_result(tmp_path):
    """(On the sequential backend, which loops over the replicas' clients.)"""
    args = ["engine.backend=sequential", "rounds=4", "eval_every=4", "checkpoint_every=2", "personalization.curve_epochs=1",
            "personalization.epochs=[1]", "personalization.train_clients=2", "replicas=2", "server_opt=adam"]
    full = train(compose_cfg(args), tmp_path / "full")
    with crash_at(3), pytest.raises(BaseException):
        train(compose_cfg(args), tmp_path / "cut")
    ckpt = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)
    assert int(ckpt["state_dict"]["round"]) == 2 and len(ckpt["pfl"]["replicas"]) == 2
    assert any(k.startswith("replica_tensors.0.global_params.") for k in ckpt["state_dict"])
    resumed = train(compose_cfg(args + ["resume=true"]), tmp_path / "cut")
    for x, y in zip(full["replicas"], resumed["replicas"]):
        for k in KEYS:
            close_tree(x[k], y[k], k)
        assert x["rounds_to_target"] == y["rounds_to_target"] and x["bytes"] == y["bytes"]
    with pytest.raises(ConfigError, match="replicas"):  # the checkpoint holds 2 replicas
        train(compose_cfg(args + ["resume=true", "replicas=3"]), tmp_path / "cut")


@pytest.mark.parametrize("override, message", [
    ("replicas=0", "replicas=0 is not allowed: expected an integer >= 1"),
    ("replicas=-2", "replicas=-2 is not allowed"),
])
def test_bad_replicas_one_line(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        train(compose_cfg([override]), tmp_path)


def test_replicas_refuse_several_processes(tmp_path):
    with pytest.raises(ConfigError, match=r"replicas=2 is not allowed: expected 1 when trainer.devices"):
        train(compose_cfg(["replicas=2", "trainer.devices=2"]), tmp_path)


def test_an_algorithm_whose_broadcast_flag_differs_between_replicas_is_refused():
    from pfl.algorithms.fedavg import FedAvg
    from pfl.algorithms.local import LocalTrainer
    from pfl.engine.replicas import ReplicaError, run_replicas
    from pfl.engine.round import Server
    from pfl.execution import Backend
    from pfl.models.mlp import MLP
    from pfl.optim import ClientSGD
    from pfl.task import Task
    from tests.helpers.engine import cohort

    class Flagged(FedAvg):
        def broadcast(self, global_params, key, server_state):
            return {"params": global_params, "flag": server_state["flag"]}

    task = Task(MLP(5, 3, [8]))
    local = LocalTrainer(task, ClientSGD(lr=0.1, batch_size=4))
    servers = []
    for flag in (True, False):
        p = {k: torch.nn.Parameter(v) for k, v in task.init_params().items()}
        servers.append(Server(p, torch.optim.SGD(p.values(), lr=1.0), {"flag": flag}))
    data = cohort([3, 5])
    keys = torch.arange(2)
    with pytest.raises(ReplicaError, match="non-tensor value that differs between replicas"):
        run_replicas(Flagged(), local, Backend("vmap"), servers, [data, data], [keys, keys], [keys[0], keys[1]],
                     [None, None])


def test_combine_rows_mean_and_per_replica_names():
    from pfl.engine.replicas import combine_rows

    rows = [{"round": 4, "stage": 0, "heldout/initial_acc": 0.2, "heldout/curve": [0.2, 0.6], "bytes/up": 10,
             "time/eval_s": 1.0},
            {"round": 4, "stage": 0, "heldout/initial_acc": 0.4, "heldout/curve": [0.4, 0.8], "bytes/up": 10,
             "time/eval_s": 2.0}]
    row = combine_rows(rows)
    assert row["round"] == 4 and row["heldout/initial_acc"] == pytest.approx(0.3)
    assert row["heldout/curve"] == pytest.approx([0.3, 0.7]) and row["time/eval_s"] == 2.0
    assert row["replica0/heldout/initial_acc"] == 0.2 and row["replica1/heldout/initial_acc"] == 0.4
    assert "replica1/bytes/up" not in row and "replica0/round" not in row
    assert combine_rows(rows[:1]) is rows[0]  # one replica: the single run's row as it is
