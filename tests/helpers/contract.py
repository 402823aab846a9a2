"""The algorithm contract's runs and checks, shared by tests/algorithms/test_contract.py (every
conf/algorithm option) and tests/docs/test_extending.py (the guide's example algorithm).

A contract run is one tiny run through the public `pfl.run.train`; the checks read the files it
wrote. Bytes are derived, not typed: `exchanged_bytes` calls the algorithm's own hooks for one client
(broadcast, broadcast_each, client_data, client_update) outside the engine and measures the tensors
that client receives and sends back (`delta` and `extra`); an algorithm that overrides
`bytes_exchanged` (a message whose size is not its tensors', e.g. a frozen head known from
initialization) declares its count there, applied to the same one-client exchange.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from omegaconf import DictConfig
from torch import Tensor
from torch.utils._pytree import tree_map

from pfl import rng
from pfl.algorithms.base import Algorithm, nbytes
from pfl.data.federated import ClientData
from pfl.run import build_experiment, load_global_params, train
from tests.helpers import compose_cfg, tiny
from tests.helpers.runs import crash_at, metrics_rows, same_results

# the tiny run of tests.helpers, evaluated every round (metrics.csv then has a row per round) on few clients
CONTRACT = {"eval_every": 1, "rounds": 4, "checkpoint_every": 2, "personalization.heldout_clients": 4,
            "personalization.train_clients": 2}
CRASH_AT = 3  # after round 3; the last checkpoint is round 2 = half the run


class Run(NamedTuple):
    cfg: DictConfig
    dir: Path
    summary: dict


@functools.cache
def _composed(overrides: tuple[str, ...]) -> DictConfig:
    return compose_cfg(list(overrides), tiny=False)


def contract_config(name: str, backend: str, overrides: list[str] = (), *extra: str,
                    changes: dict | None = None) -> DictConfig:
    """The config of a contract run. Composed once per algorithm and overrides (Hydra's compose is a third of
    a tiny run): the backend and `resume=true`, plain values that no defaults list reads, are set on a copy,
    as the command line would set them."""
    resume = "resume=true" in extra
    cfg = copy.deepcopy(_composed((*tiny({**CONTRACT, **(changes or {})}), f"algorithm={name}", *overrides,
                                   *(e for e in extra if e != "resume=true"))))
    cfg.engine.backend = backend
    cfg.resume = True if resume else cfg.resume
    return cfg


def contract_run(name: str, backend: str, run_dir: Path, overrides: list[str] = (), *extra: str,
                 changes: dict | None = None) -> Run:
    """The contract's tiny run of `algorithm=name` on `backend` (tiny() turns the plots off); `changes` to
    CONTRACT as in `tiny` (DROP: a key another data set lacks)."""
    cfg = contract_config(name, backend, overrides, *extra, changes=changes)
    return Run(cfg, run_dir, train(cfg, run_dir))


def resumed_run(name: str, run_dir: Path, overrides: list[str] = ()) -> Run:
    """The vmap contract run interrupted after round CRASH_AT (last checkpoint: round CRASH_AT - 1), then resumed."""
    with crash_at(CRASH_AT), pytest.raises(BaseException, match="simulated crash|1"):
        contract_run(name, "vmap", run_dir, overrides)
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert int(ckpt["state_dict"]["round"]) == CRASH_AT - 1
    return contract_run(name, "vmap", run_dir, overrides, "resume=true")


def numbers(rows: list[dict]) -> list[dict]:
    """metrics.csv rows as numbers, without the clock readings (wall_time, eval_time, ...)."""
    return [{k: float(v) if v not in ("", None) else v for k, v in r.items() if "time" not in k} for r in rows]


def accuracies(s: dict) -> dict[str, float]:
    """The summary's accuracies (held-out and training clients) as one flat {name: value}."""
    out = {}
    for pop, part, curve in (("heldout", s, "personalization_curve"), ("train", s["train_clients"], "curve")):
        out[f"{pop}/initial"] = part.get("initial_accuracy")
        out.update({f"{pop}/personalized_{k}": v for k, v in part.get("personalized_accuracy", {}).items()})
        out.update({f"{pop}/curve_{i}": v for i, v in enumerate(part.get(curve) or [])})
    return out


def check_vmap_equals_sequential(a: Run, b: Run) -> None:
    assert a.summary["backend"] == "vmap" and b.summary["backend"] == "sequential"
    assert accuracies(a.summary) == pytest.approx(accuracies(b.summary), rel=1e-5, abs=1e-5)
    assert a.summary["bytes"] == b.summary["bytes"]
    ra, rb = numbers(metrics_rows(a.dir)), numbers(metrics_rows(b.dir))
    assert [r.keys() for r in ra] == [r.keys() for r in rb]
    for x, y in zip(ra, rb):  # training loss (and every other logged metric) round by round
        assert x == pytest.approx(y, rel=1e-5, abs=1e-5), x["round"]


def check_resume_equals_uninterrupted(full: Run, resumed: Run) -> None:
    same_results(full.summary, resumed.summary)
    a, b = load_global_params(full.dir), load_global_params(resumed.dir)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert numbers(metrics_rows(full.dir)) == numbers(metrics_rows(resumed.dir))


def _one_row(t):
    return t.unsqueeze(0) if isinstance(t, Tensor) else t


def exchanged_bytes(cfg: DictConfig) -> list[tuple[int, int, int]]:
    """Per stage of the run `cfg` describes: (clients per round, down, up bytes of one client), from one
    client's exchange at the initial state, computed by the algorithm's hooks outside the engine."""
    exp = build_experiment(cfg)
    first, n = exp.stages[0].algorithm, len(exp.data.train)
    theta = first.init_population(first.init_global(exp.task.init_params()), n)
    state = first.init_client_state(theta)
    out = []
    for stage in exp.stages:
        alg = stage.algorithm
        cohort = len(alg.client_data(exp.data.train.train, torch.arange(int(cfg.clients_per_round)))[1])
        data, ids = alg.client_data(exp.data.train.train, torch.arange(1))
        with torch.no_grad():
            each = alg.broadcast_each(theta, ids)
        server_state = alg.init_server_state(theta, num_clients=n, rounds=stage.rounds)
        received = {**alg.broadcast(theta, rng.key(cfg.seed, 0, 0x5E4D), server_state),
                    **{k: v[0] for k, v in (each or {}).items()}}
        # one client with one example: the shapes of what it exchanges, at the cost of the fewest local steps
        one = ClientData(data.x[0, :1], data.y[0, :1], torch.ones_like(data.n[0]), None if data.aug is None else data.aug[0])
        update = alg.client_update(exp.local, received, one, rng.key(cfg.seed, 0, 0), state)
        down, up = nbytes(received), nbytes((update.delta, update.extra))
        if type(alg).bytes_exchanged is not Algorithm.bytes_exchanged:  # the algorithm declares its own count
            down, up = alg.bytes_exchanged(received, tree_map(_one_row, update))
        out.append((cohort, down, up))
    return out


def check_bytes(run: Run) -> None:
    """Per round: clients x one client's exchange (`exchanged_bytes`); totals = the sums of the rounds."""
    s, rows = run.summary, numbers(metrics_rows(run.dir))
    rounds = s["rounds"]
    assert [int(row["round"]) for row in rows] == list(range(1, rounds + 1))  # eval_every=1: a row per round
    stages = exchanged_bytes(run.cfg)
    for i, way in ((1, "down"), (2, "up")):
        per_round = [int(row[f"bytes/{way}"]) for row in rows]
        expected = [stages[int(row.get("stage") or 0)][0] * stages[int(row.get("stage") or 0)][i] for row in rows]
        assert per_round == expected, way
        assert s["bytes"][f"{way}_total"] == sum(per_round), way
        assert [int(row[f"bytes/{way}_total"]) for row in rows] == [sum(per_round[:j + 1]) for j in range(rounds)]
        assert s["bytes"][f"{way}_per_round"] == pytest.approx(sum(per_round) / rounds), way
