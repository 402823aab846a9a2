"""Two CPU ranks (Lightning's DDP strategy, gloo) give one process's results, and a
checkpoint written by either resumes on the other after kill -9."""

import json
import os
import subprocess
import sys

import pytest
import torch.distributed as dist

from pfl.run import train
from tests.algorithms.test_contract import ALGORITHMS
from tests.algorithms.test_contract import overrides as contract_overrides
from tests.helpers import REPO, TINY, compose_cfg, tiny
from tests.helpers.runs import close_tree, kill_once_checkpointed

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

ARGS = [a for a in TINY if not a.startswith(("rounds=", "checkpoint_every=", "eval_every="))]
ARGS += ["rounds=12", "checkpoint_every=2", "eval_every=6", "model.dropout=0.2"]
KEYS = ("initial_accuracy", "personalized_accuracy", "personalization_curve", "train_clients", "bytes",
        "rounds_to_target")


def _cmd(run, devices, *extra):
    return [sys.executable, "-m", "pfl", *ARGS, f"trainer.devices={devices}", f"hydra.run.dir={run}", *extra]


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO), WANDB_MODE="disabled", OMP_NUM_THREADS="1")


def _run(run, devices, *extra):
    done = subprocess.run(_cmd(run, devices, *extra), cwd=run.parent, env=_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((run / "summary.json").read_text())


def _killed(run, devices):
    """A run of `devices` ranks, SIGKILLed (every rank) once a checkpoint exists."""
    kill_once_checkpointed(_cmd(run, devices), run, _env())


def _same(a, b):
    for k in KEYS:
        close_tree(a[k], b[k], k)


@pytest.mark.slow  # real processes (interpreter start-up dominates); runs in the full suite
def test_two_ranks_equal_one_process_and_resume_across_world_sizes(tmp_path):
    ref = train(compose_cfg(ARGS, tiny=False), tmp_path / "one")  # one process (this one: no interpreter start)
    two = tmp_path / "two_then_one"
    _killed(two, 2)  # a checkpoint written by 2 ranks, resumed by 1
    _same(_run(two, 1, "resume=true"), ref)
    one = tmp_path / "one_then_two"
    _killed(one, 1)  # written by 1 process, resumed (and finished) by 2 ranks
    resumed = _run(one, 2, "resume=true")
    _same(resumed, ref)
    for run in (two, one):  # a second rank really ran (Lightning names its Hydra job so) and logged only there
        assert (run / "train_ddp_process_1.log").exists()
    assert (one / "metrics.csv").read_text() .count("\n") == (tmp_path / "one" / "metrics.csv").read_text().count("\n")


# Every option of conf/algorithm (globbed, as the contract suite) run with 2 ranks equals one process: the
# extensions of the contract included (kNN-Per's evaluate hook, FedProto's prototypes exchange, FedBN's local BN
# state, per-client state and stages: FedALA, FedPAC, FedAvg-FT; pFedHN's server network read through
# broadcast_each, written by a server step over updates.ids; init_population). One launch of two processes runs
# them all in turn (tests.helpers.two_ranks: an interpreter start costs more than a tiny run). 3 clients per round
# and 8 held-out clients: the blocks of the ranks are uneven. Each run: 2 rounds, evaluated at the end on the
# held-out clients and on 2 training clients with their per-client state.
EVERY = tiny({"rounds": 2, "eval_every": 2, "checkpoint_every": 0, "clients_per_round": 3,
              "personalization.train_clients": 2})


@pytest.mark.slow  # two real processes running every algorithm; ~1 minute on an idle 2-core machine
def test_two_ranks_equal_one_process_for_every_algorithm(tmp_path):
    runs = [[name, [*EVERY, f"algorithm={name}", *contract_overrides(name)]] for name in ALGORITHMS]
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"root": str(tmp_path / "two"), "runs": runs}))
    cmd = [sys.executable, "-m", "tests.helpers.two_ranks", str(spec)]
    done = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    for name, args in runs:
        two = json.loads((tmp_path / "two" / name / "summary.json").read_text())
        rank1 = json.loads((tmp_path / "two" / name / "rank1.json").read_text())  # the second rank ran it too
        one = train(compose_cfg(args, tiny=False), tmp_path / "one" / name)
        for k in KEYS:
            close_tree(two[k], one[k], f"{name}: {k}")
            close_tree(rank1[k], one[k], f"{name}, rank 1: {k}")
