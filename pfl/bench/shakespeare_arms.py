"""The arms of pfl.bench.shakespeare, each run in its own process (`run(spec)` -> seconds and FLOPs)."""

from __future__ import annotations

import time

import torch
from torch import nn

from pfl.bench import shakespeare as sk
from pfl.data.federated import _client_arrays

PAD = 0


def _plain_model() -> nn.Module:
    from pfl.bench.plain import _CharLSTM

    return _CharLSTM(sk.VOCAB)


def _plain_loss(model, x, y):
    logits = model(x)
    return nn.functional.cross_entropy(logits.reshape(-1, sk.VOCAB), y.reshape(-1), ignore_index=PAD)


def _plain_epoch(model, opt, x, y, g):
    order = torch.randperm(len(x), generator=g)
    for s in range(0, len(x), sk.BATCH):
        idx = order[s:s + sk.BATCH]
        opt.zero_grad(set_to_none=True)
        _plain_loss(model, x[idx], y[idx]).backward()
        opt.step()


@torch.no_grad()
def _plain_correct(model, x, y) -> int:
    return int(((model(x).argmax(-1) == y) & (y != PAD)).sum())


def plain_eval(pop, ids: list[int]) -> None:
    torch.manual_seed(0)
    server, local = _plain_model(), _plain_model()
    opt = torch.optim.SGD(local.parameters(), lr=sk.LR)
    g = torch.Generator().manual_seed(1)
    for i in ids:
        trx, tr_y, tex, te_y = _client_arrays(pop, i)
        trx, tex = trx.long(), tex.long()
        local.load_state_dict(server.state_dict())
        _plain_correct(local, tex, te_y)
        for _ in range(sk.EVAL_EPOCHS):
            _plain_epoch(local, opt, trx, tr_y, g)
            _plain_correct(local, tex, te_y)


def plain_rounds(pop, cohorts: list[list[int]], epochs: int) -> None:
    torch.manual_seed(0)
    model, local = _plain_model(), _plain_model()
    opt = torch.optim.SGD(local.parameters(), lr=sk.LR)
    server = torch.optim.SGD(model.parameters(), lr=1.0)
    g = torch.Generator().manual_seed(1)
    for cohort in cohorts:
        acc = [torch.zeros_like(p) for p in model.parameters()]
        weight = 0
        for i in cohort:
            x, y = _client_arrays(pop, i)[:2]
            local.load_state_dict(model.state_dict())
            for _ in range(epochs):
                _plain_epoch(local, opt, x.long(), y, g)
            with torch.no_grad():
                for a, p0, p1 in zip(acc, model.parameters(), local.parameters()):
                    a.add_(p0 - p1, alpha=len(x))
            weight += len(x)
        for p, a in zip(model.parameters(), acc):
            p.grad = a / max(weight, 1)
        server.step()


def _pfl_setup(fused: bool):
    from pfl.algorithms.local import LocalTrainer
    from pfl.data.transforms import token_ids
    from pfl.models.lstm import CharLSTM
    from pfl.optim import ClientSGD
    from pfl.task import Task

    torch.manual_seed(0)
    task = Task(CharLSTM(sk.VOCAB, vocab_size=sk.VOCAB, fused=fused), token_ids, ignore_index=PAD)
    return LocalTrainer(task, ClientSGD(lr=sk.LR, batch_size=sk.BATCH))


def pfl_eval(pop, ids: list[int], fused: bool) -> None:
    from pfl import rng
    from pfl.algorithms.fedavg import FedAvg
    from pfl.evaluation.personalize import personalize
    from pfl.execution import Backend

    local = _pfl_setup(fused)
    personalize(FedAvg(local_epochs=1), local, local.task.init_params(), pop, torch.tensor(ids), sk.EVAL_EPOCHS,
                rng.key(0, 7), Backend("sequential"))


def pfl_rounds(pop, cohorts: list[list[int]], epochs: int, fused: bool) -> None:
    from pfl import rng
    from pfl.algorithms.fedavg import FedAvg
    from pfl.engine.round import Server, cohort_keys, run_round
    from pfl.execution import Backend

    local = _pfl_setup(fused)
    params = {k: nn.Parameter(v) for k, v in local.task.init_params().items()}
    server = Server(params, torch.optim.SGD(params.values(), lr=1.0))
    for r, cohort in enumerate(cohorts):
        ids = torch.tensor(cohort)
        run_round(FedAvg(local_epochs=epochs), local, Backend("sequential"), server, pop.train.gather(ids),
                  cohort_keys(0, r, ids), rng.key(0, r, 99))


def _work(spec: dict, pop, part) -> None:
    kind, eval_case = spec["kind"], spec["case"] == "shakespeare_eval"
    if eval_case:
        (plain_eval(pop, part) if kind == "plain" else pfl_eval(pop, part, kind == "pfl"))
    elif kind == "plain":
        plain_rounds(pop, part, spec["epochs"])
    else:
        pfl_rounds(pop, part, spec["epochs"], kind == "pfl")


def run(spec: dict) -> dict:
    torch.set_num_threads(spec["threads"])
    train, held = sk.load(spec.get("root"))
    pop = held if spec["case"] == "shakespeare_eval" else train
    _work(spec, pop, spec["warmup"])  # untimed: first calls, kernel set-up
    t = time.perf_counter()
    _work(spec, pop, spec["part"])
    return {"seconds": time.perf_counter() - t}
