"""The evaluation of a run: when it happens, whom it measures, and what it logs.

Every `eval_every` rounds, at each stage's end and at the end the clients of
`personalization.population` are personalized and evaluated (the headline
population first; evaluations before the last may use `interim_*` samples, the
last is complete). Every `personalization.track_every` rounds a fixed sample of
the headline clients is measured for rounds to target (initial accuracy, Pers.k
of `track_epochs`; pfl.engine.targets). The local-only reference (Acc_local) is
computed once per run and replica.

`Evaluator(module)` reads the run's state from its FederatedModule (replicas,
parameters, stages, device) and writes the rows into the module's history.
"""

from __future__ import annotations

import logging
import time

import torch
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor

from pfl import rng
from pfl.engine import names
from pfl.engine.eval_line import eval_line
from pfl.engine.replicas import combine_rows
from pfl.evaluation.fairness import beats_local, local_reference
from pfl.evaluation.personalize import PersonalizationResult, personalize

log = logging.getLogger("pfl")


class Evaluator:
    def __init__(self, module):
        self.m = module

    # -- schedule -------------------------------------------------------------
    def evaluates_after(self, r: int) -> bool:
        """Whether round r (1-based: after r rounds) ends with an evaluation."""
        stage_end, end = False, 0
        for s in self.m.stages:
            end += s.rounds
            stage_end = stage_end or r == end
        return r % self.m.eval_every == 0 or r == self.m.total_rounds or stage_end

    def tracks_after(self, r: int) -> bool:
        every = self.m.personalization.track_every
        return bool(every) and (r % every == 0 or r == self.m.total_rounds)

    def track(self, r: int, replica: int = 0) -> dict:
        """Rounds-to-target measurement after round r: the tracked sample of the headline clients,
        initial accuracy (forward only) and Pers.k for `track_epochs`; kept in the replica's
        `track_history` (with the bytes spent so far, for summary.own_target)."""
        t = time.perf_counter()
        p = self.m.personalization
        rep = self.m.reps[replica]
        clients = self.sample(p.headline, p.track_clients, replica)
        ks = sorted(set(int(k) for k in p.track_epochs))
        row = {}
        if len(clients):
            curve = self.personalize(p.headline, clients, replica=replica, epochs=max(ks, default=0)).mean_accuracy()
            row = {names.tracked(k): float(curve[k]) for k in [0, *ks]}
        row[names.TRACK_S] = time.perf_counter() - t
        rep.track_history.append({names.ROUND: r, names.BYTES_DOWN_TOTAL: rep.bytes_total["down"],
                                  names.BYTES_UP_TOTAL: rep.bytes_total["up"], **row})
        return row

    def personalize(self, population: str, clients: Tensor | None = None, progress=None,
                    replica: int = 0, epochs: int | None = None) -> PersonalizationResult:
        rep = self.m.reps[replica]
        pop = getattr(rep.data, population)
        if clients is None:
            clients = torch.arange(len(pop))
        alg = self.m.stages[self.m.stage_index(max(int(self.m.round) - 1, 0))].algorithm
        params = {k: v.detach() for k, v in self.m.params(replica).items()}  # the server's state; adapt reads the model from it
        state = None  # training clients are personalized from their own per-client state (held-out ones have none)
        cs = rep.tensors.client_state
        if population == "train" and cs is not None and len(cs):
            rows = clients.to(cs[next(iter(cs))].device)
            state = {self.m._state_names[k]: v.detach()[rows] for k, v in cs.items()}
        if population == "train":  # what the server addresses to each training client (broadcast_each)
            with torch.no_grad():
                each = alg.broadcast_each(params, clients.to(self.m.device))
            state = state if each is None else {**(state or {}), **each}
        self.m.model.train()
        return personalize(
            alg, self.m.personalize_local, params, pop, clients.to(self.m.device),
            self.m.curve_epochs if epochs is None else epochs, self._personalize_key(population, replica), self.m.backend, self.m.eval_chunk_size, progress=progress,
            state=state,
        )

    def _personalize_key(self, population: str, replica: int = 0) -> Tensor:
        """The minibatch stream of a population's personalization; the local-only reference uses the same one,
        so that its Acc_local is exactly the `local` algorithm's personalization (common random numbers)."""
        return rng.key(self.m.reps[replica].seed, 0xE7A1, 1 if population == "heldout" else 2).to(self.m.device)

    def local_reference(self, population: str, clients: Tensor, progress=None, replica: int = 0) -> Tensor:
        """Per-client accuracy of a model trained on the client alone (the
        `local` algorithm's personalization from the initial model). It does
        not depend on the server's model: computed once per run (and cached
        on disk across runs when `local_cache_dir` is set)."""
        p = self.m.personalization
        rep = self.m.reps[replica]
        key = (population, tuple(int(c) for c in clients))
        if key not in rep.local_reference:
            init = {k: v.detach() for k, v in self.m.local.task.init_params().items()}
            if replica > 0:  # the replica's own initial model (the model object holds replica 0's)
                init = {k: v.detach().to(init[k].device) for k, v in self.m._initial[replica].items()}
            rep.local_reference[key] = local_reference(
                self.m.personalize_local, init, getattr(rep.data, population), clients.to(self.m.device),
                p.local_epochs, p.local_lr, self._personalize_key(population, replica),
                self.m.backend, self.m.eval_chunk_size, self.m.local_cache_dir, progress,
            )
        return rep.local_reference[key]

    def eval_clients(self, population: str, replica: int = 0) -> Tensor:
        """The clients of the complete (last) evaluation of `population`: all, or a fixed seeded sample."""
        rep = self.m.reps[replica]
        n = len(getattr(rep.data, population))
        p = self.m.personalization
        limit = p.heldout_clients if population == "heldout" else p.train_clients
        if limit is None or limit >= n:
            return torch.arange(n)
        g = torch.Generator().manual_seed(int(rng.key(rep.seed, 0x5A3E, len(population))))
        return torch.randperm(n, generator=g)[:limit].sort().values

    def sample(self, population: str, limit: int | None, replica: int = 0) -> Tensor:
        """A fixed seeded sample of `limit` of eval_clients(population) (None: all of them); the interim
        and tracked samples both come from this one order, so the smaller is inside the larger."""
        full = self.eval_clients(population, replica)
        if limit is None or limit >= len(full):
            return full
        g = torch.Generator().manual_seed(int(rng.key(self.m.reps[replica].seed, 0x7AC4, len(population))))
        return full[torch.randperm(len(full), generator=g)[:limit]].sort().values

    def _eval_bar(self, r: int, total: int):
        """A progress bar over the evaluation's clients, below the rounds bar (rank 0, when bars are on)."""
        if not self.m.trainer.is_global_zero or self.m.trainer.progress_bar_callback is None or total == 0:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=f"evaluation (round {r})", unit="client", position=1, leave=False,
                    dynamic_ncols=True)

    def _ticker(self, bar):
        """The evaluation's progress callback: advance the bar, and stop here if a stop was asked for."""
        def tick(n: int) -> None:
            if bar is not None:
                bar.update(n)
            if self.m.interrupt_check is not None:
                self.m.interrupt_check()

        return tick

    def evaluate(self, r: int, train_metrics) -> dict:
        """Evaluate every replica (`train_metrics`: its training row, or a list of one per replica),
        log the row (pfl.engine.replicas.combine_rows for R > 1) and return it."""
        t_eval = time.perf_counter()
        rows_in = train_metrics if isinstance(train_metrics, list) else [train_metrics]
        p = self.m.personalization
        final = r >= self.m.total_rounds  # the last evaluation is complete; earlier ones may be samples
        plans = [{pop: self.eval_clients(pop, i) if final else self.sample(pop, p.interim_clients, i)
                  for pop in p.populations()} for i in range(len(self.m.reps))]
        extra = [k for s in self.m.stages for k in s.algorithm.report_epochs]
        epochs = self.m.curve_epochs if final else p.interim_curve_length(extra)
        total = 0
        for i, (rep, plan) in enumerate(zip(self.m.reps, plans)):
            total += sum(len(c) for c in plan.values())
            full = self.eval_clients(p.headline, i)  # Acc_local: once for the complete headline set, then indexed
            if p.local_baseline and (p.headline, tuple(int(c) for c in full)) not in rep.local_reference:
                total += len(full)  # the local-only reference is computed on the first evaluation
        bar = self._eval_bar(r, total)
        tick = None if bar is None and self.m.interrupt_check is None else self._ticker(bar)
        rows = []
        for i, (rep, plan, row_in) in enumerate(zip(self.m.reps, plans, rows_in)):
            results, row = self._evaluate(r, i, plan, dict(row_in), tick, epochs)
            row[names.EVAL_S] = time.perf_counter() - t_eval  # seconds this evaluation took (so far: all replicas)
            row[names.EVAL_CLIENTS] = total
            row[names.WALL_S] = time.perf_counter() - self.m._t0
            rep.history.append(row)
            rep.last_eval = {"row": row, "results": results}
            rows.append(row)
        if bar is not None:
            bar.close()
        row = combine_rows(rows)
        self.m.history.append(row)
        self.m.last_eval = self.m.reps[0].last_eval if len(self.m.reps) == 1 else {"row": row, "results": {}}
        if self.m.on_evaluation is not None:
            self.m.on_evaluation(r, row, self.m.reps[0].last_eval["results"])
        self.m._log_row(row, r)
        _info(eval_line(r, names.PREFIX[p.headline], rows, len(plans[0].get(p.headline, [])),
                        len(self.eval_clients(p.headline, 0)), row[names.EVAL_S]))  # sample size, ± std over replicas
        return row

    def _evaluate(self, r: int, replica: int, plan: dict, row: dict, tick, epochs: int) -> tuple[dict, dict]:
        """One replica's evaluation: (results per population, its row); `epochs`: the curve's length."""
        results = {}
        head = self.m.personalization.headline
        for pop, clients in plan.items():
            if len(clients) == 0:
                continue
            res = self.personalize(pop, clients, tick, replica, epochs=epochs)
            if pop == head and self.m.personalization.local_baseline:
                full = self.eval_clients(pop, replica)
                ref = self.local_reference(pop, full, tick, replica)
                res.local_accuracy = ref[torch.searchsorted(full, clients.cpu())]
                for k, frac in beats_local(res, self.m.report_epochs).items():
                    row[names.beats_local(k, pop)] = frac
                row[names.local(pop)] = float(res.local_accuracy[res.num_test > 0].mean())
            results[pop] = res
            curve = res.mean_accuracy()
            row[names.initial(pop)] = float(curve[0])
            for k in self.m.report_epochs:
                row[names.pers(k, pop)] = float(curve[k])
            acc = res.accuracy
            last = max(self.m.report_epochs, default=0)
            valid = res.num_test > 0
            row[names.worse(last, pop)] = float((acc[valid, last] < acc[valid, 0]).double().mean())
            row[names.curve(pop)] = [float(c) for c in curve]
        return results, row



def _info(message: str) -> None:
    """To the console and pfl.log, once (rank 0)."""
    if rank_zero_only.rank == 0:
        log.info(message)
