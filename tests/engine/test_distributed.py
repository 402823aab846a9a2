"""Two CPU ranks (Lightning's DDP strategy, gloo) give one process's results, and a
checkpoint written by either resumes on the other after kill -9."""

import json
import os
import subprocess
import sys

import pytest
import torch.distributed as dist

from pfl.run import train
from tests.helpers import REPO, TINY, compose_cfg
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


# server-side per-client parameters read through broadcast_each (each rank computes its share of the clients with
# their rows) and written by a server step that reads updates.ids: pFedHN's embeddings (one generated model per
# client), FedPAC's per-client classifiers (combined from every rank's uploads)
PER_CLIENT = {"pfedhn": ["algorithm.local_steps=5", "algorithm.hidden=8", "algorithm.n_hidden=1"],
              "fedpac": ["algorithm.body_epochs=1"]}


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", sorted(PER_CLIENT))
def test_two_ranks_equal_one_process_for_per_client_server_state(tmp_path, algorithm):
    args = [a for a in TINY if not a.startswith("checkpoint_every=")]
    args += [f"algorithm={algorithm}", *PER_CLIENT[algorithm], "checkpoint_every=0"]
    ref = train(compose_cfg(args, tiny=False), tmp_path / "one")
    run = tmp_path / "two"
    cmd = [sys.executable, "-m", "pfl", *args, "trainer.devices=2", f"hydra.run.dir={run}"]
    done = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run / "train_ddp_process_1.log").exists()  # a second rank really ran
    _same(json.loads((run / "summary.json").read_text()), ref)
