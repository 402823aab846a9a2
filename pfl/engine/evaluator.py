"""The evaluation of a run: when it happens, whom it measures, and what it logs.

Every `eval_every` rounds, at each stage's end and at the end the clients of
`personalization.population` are personalized and evaluated (the headline
population first; evaluations before the last may use `interim_*` samples, the
last is complete). Every `personalization.track_every` rounds a fixed sample of
the headline clients is measured for rounds to target (initial accuracy, Pers.k
of `track_epochs`; pfl.engine.targets). The local-only reference (Acc_local) is
computed once per run and replica.

`Evaluator(EvalSetup)` holds what is fixed for the run; each call reads the run's
state now (`RunState`: replicas, server parameters, the current algorithm, device)
and returns rows and results. The FederatedModule keeps the history, draws the
progress bar and logs (pfl.engine.module).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from pfl import rng
from pfl.algorithms.local import LocalTrainer
from pfl.engine import names
from pfl.evaluation.fairness import beats_local, local_reference
from pfl.evaluation.personalize import PersonalizationResult, personalize
from pfl.evaluation.settings import PersonalizationSettings
from pfl.execution import Backend


@dataclass(frozen=True)
class EvalSetup:
    """What the evaluation reads that stays fixed during a run."""

    stages: list  # the run's stages (pfl.engine.experiment.Stage: name, algorithm, rounds)
    model: nn.Module  # the model the task evaluates (put in training mode before personalization)
    personalization: PersonalizationSettings
    local: LocalTrainer  # personalization's client optimizer (and the task)
    backend: Backend
    eval_every: int
    chunk_size: int | None  # clients per personalization chunk
    local_cache_dir: str | None  # the local-only reference's cache across runs
    initial: dict  # replica r >= 1 -> its initial model parameters (replica 0's: the task's)
    total_rounds: int
    curve_epochs: int  # the personalization curve's length at the last evaluation
    report_epochs: tuple  # Pers.k reported


@dataclass(frozen=True)
class RunState:
    """The run's state that one evaluation reads (the module's, lent; the evaluation never writes it)."""

    reps: list  # pfl.engine.replica_state.Replica: seed, data, per-client state, bytes so far
    params: Callable[[int], dict]  # replica -> the server's parameters under their algorithm names
    state_names: dict  # stored per-client state name -> the algorithm's name
    algorithm: object  # the algorithm of the stage that last trained (its personalization)
    device: torch.device


class Evaluator:
    """The evaluation's schedule, client samples and measurements. Each call reads `RunState` and
    returns its rows; the FederatedModule keeps the history. Its own state is a cache: the
    local-only reference of each replica, population and client set (it never changes in a run)."""

    def __init__(self, setup: EvalSetup):
        self.s = setup
        self._local: dict = {}  # (replica, population, clients) -> local-only accuracies

    # -- schedule -------------------------------------------------------------
    def evaluates_after(self, r: int) -> bool:
        """Whether round r (1-based: after r rounds) ends with an evaluation."""
        stage_end, end = False, 0
        for st in self.s.stages:
            end += st.rounds
            stage_end = stage_end or r == end
        return r % self.s.eval_every == 0 or r == self.s.total_rounds or stage_end

    def tracks_after(self, r: int) -> bool:
        every = self.s.personalization.track_every
        return bool(every) and (r % every == 0 or r == self.s.total_rounds)

    def track(self, run: RunState, r: int, replica: int = 0) -> dict:
        """Rounds-to-target measurement after round r: the tracked sample of the headline clients,
        initial accuracy (forward only) and Pers.k for `track_epochs`. The row for the replica's
        `track_history` (with the bytes spent so far, for summary.own_target)."""
        t = time.perf_counter()
        p = self.s.personalization
        rep = run.reps[replica]
        clients = self.sample(run, p.headline, p.track_clients, replica)
        ks = sorted(set(int(k) for k in p.track_epochs))
        row = {}
        if len(clients):
            curve = self.personalize(run, p.headline, clients, replica=replica, epochs=max(ks, default=0)).mean_accuracy()
            row = {names.tracked(k): float(curve[k]) for k in [0, *ks]}
        row[names.TRACK_S] = time.perf_counter() - t
        return {names.ROUND: r, names.BYTES_DOWN_TOTAL: rep.bytes_total["down"],
                names.BYTES_UP_TOTAL: rep.bytes_total["up"], **row}

    def personalize(self, run: RunState, population: str, clients: Tensor | None = None, progress=None,
                    replica: int = 0, epochs: int | None = None) -> PersonalizationResult:
        rep = run.reps[replica]
        pop = getattr(rep.data, population)
        if clients is None:
            clients = torch.arange(len(pop))
        alg = run.algorithm
        params = {k: v.detach() for k, v in run.params(replica).items()}  # the server's state; adapt reads the model from it
        state = None  # training clients are personalized from their own per-client state (held-out ones have none)
        cs = rep.tensors.client_state
        if population == "train" and cs is not None and len(cs):
            rows = clients.to(cs[next(iter(cs))].device)
            state = {run.state_names[k]: v.detach()[rows] for k, v in cs.items()}
        if population == "train":  # what the server addresses to each training client (broadcast_each)
            with torch.no_grad():
                each = alg.broadcast_each(params, clients.to(run.device))
            state = state if each is None else {**(state or {}), **each}
        self.s.model.train()
        return personalize(
            alg, self.s.local, params, pop, clients.to(run.device), self.s.curve_epochs if epochs is None else epochs,
            self._personalize_key(run, population, replica), self.s.backend, self.s.chunk_size, progress=progress,
            state=state,
        )

    def _personalize_key(self, run: RunState, population: str, replica: int = 0) -> Tensor:
        """The minibatch stream of a population's personalization; the local-only reference uses the same one,
        so that its Acc_local is exactly the `local` algorithm's personalization (common random numbers)."""
        return rng.key(run.reps[replica].seed, 0xE7A1, 1 if population == "heldout" else 2).to(run.device)

    def has_local_reference(self, population: str, clients: Tensor, replica: int = 0) -> bool:
        return (replica, population, tuple(int(c) for c in clients)) in self._local

    def local_reference(self, run: RunState, population: str, clients: Tensor, progress=None, replica: int = 0) -> Tensor:
        """Per-client accuracy of a model trained on the client alone (the
        `local` algorithm's personalization from the initial model). It does
        not depend on the server's model: computed once per run (and cached
        on disk across runs when `local_cache_dir` is set)."""
        p = self.s.personalization
        rep = run.reps[replica]
        key = (replica, population, tuple(int(c) for c in clients))
        if key not in self._local:
            init = {k: v.detach() for k, v in self.s.local.task.init_params().items()}
            if replica > 0:  # the replica's own initial model (the model object holds replica 0's)
                init = {k: v.detach().to(init[k].device) for k, v in self.s.initial[replica].items()}
            self._local[key] = local_reference(
                self.s.local, init, getattr(rep.data, population), clients.to(run.device),
                p.local_epochs, p.local_lr, self._personalize_key(run, population, replica),
                self.s.backend, self.s.chunk_size, self.s.local_cache_dir, progress,
            )
        return self._local[key]

    def eval_clients(self, run: RunState, population: str, replica: int = 0) -> Tensor:
        """The clients of the complete (last) evaluation of `population`: all, or a fixed seeded sample."""
        rep = run.reps[replica]
        n = len(getattr(rep.data, population))
        p = self.s.personalization
        limit = p.heldout_clients if population == "heldout" else p.train_clients
        if limit is None or limit >= n:
            return torch.arange(n)
        g = torch.Generator().manual_seed(int(rng.key(rep.seed, 0x5A3E, len(population))))
        return torch.randperm(n, generator=g)[:limit].sort().values

    def sample(self, run: RunState, population: str, limit: int | None, replica: int = 0) -> Tensor:
        """A fixed seeded sample of `limit` of eval_clients(population) (None: all of them); the interim
        and tracked samples both come from this one order, so the smaller is inside the larger."""
        full = self.eval_clients(run, population, replica)
        if limit is None or limit >= len(full):
            return full
        g = torch.Generator().manual_seed(int(rng.key(run.reps[replica].seed, 0x7AC4, len(population))))
        return full[torch.randperm(len(full), generator=g)[:limit]].sort().values

    def plan(self, run: RunState, r: int) -> tuple[list[dict], int, int]:
        """The evaluation after round r: (per replica {population: clients}, the curve's length, the number of
        clients it personalizes, the local-only reference's included)."""
        p = self.s.personalization
        final = r >= self.s.total_rounds  # the last evaluation is complete; earlier ones may be samples
        plans = [{pop: self.eval_clients(run, pop, i) if final else self.sample(run, pop, p.interim_clients, i)
                  for pop in p.populations()} for i in range(len(run.reps))]
        extra = [k for st in self.s.stages for k in st.algorithm.report_epochs]
        epochs = self.s.curve_epochs if final else p.interim_curve_length(extra)
        total = 0
        for i, plan in enumerate(plans):
            total += sum(len(c) for c in plan.values())
            full = self.eval_clients(run, p.headline, i)  # Acc_local: once for the complete headline set, then indexed
            if p.local_baseline and not self.has_local_reference(p.headline, full, i):
                total += len(full)  # the local-only reference is computed on the first evaluation
        return plans, epochs, total

    def evaluate(self, run: RunState, r: int, replica: int, plan: dict, row: dict, tick, epochs: int) -> tuple[dict, dict]:
        """One replica's evaluation: (results per population, its row: `row`, the training row, with the
        evaluation's metrics added); `epochs`: the curve's length."""
        results = {}
        p = self.s.personalization
        for pop, clients in plan.items():
            if len(clients) == 0:
                continue
            res = self.personalize(run, pop, clients, tick, replica, epochs=epochs)
            if pop == p.headline and p.local_baseline:
                full = self.eval_clients(run, pop, replica)
                ref = self.local_reference(run, pop, full, tick, replica)
                res.local_accuracy = ref[torch.searchsorted(full, clients.cpu())]
                for k, frac in beats_local(res, self.s.report_epochs).items():
                    row[names.beats_local(k, pop)] = frac
                row[names.local(pop)] = float(res.local_accuracy[res.num_test > 0].mean())
            results[pop] = res
            curve = res.mean_accuracy()
            row[names.initial(pop)] = float(curve[0])
            for k in self.s.report_epochs:
                row[names.pers(k, pop)] = float(curve[k])
            acc = res.accuracy
            last = max(self.s.report_epochs, default=0)
            valid = res.num_test > 0
            row[names.worse(last, pop)] = float((acc[valid, last] < acc[valid, 0]).double().mean())
            row[names.curve(pop)] = [float(c) for c in curve]
        return results, row
