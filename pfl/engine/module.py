"""The LightningModule: one `training_step` is one communication round.

Lightning drives the rounds (progress bar, loggers, devices, checkpoint
save/restore); the round itself is `pfl.engine.round.run_round`, and this
module only schedules it and knows no particular algorithm. Per round:

    cohort ids (seeded by seed and round) -> algorithm.client_data (padded, on device)
    -> run_round: broadcast, backend.map(client_update), aggregate, server_update
    -> per-client state written back, bytes and metrics logged

A run is a list of stages (one for most algorithms; Personalized FedAvg has
two), each with its own algorithm, server optimizer and number of rounds.
Every `eval_every` rounds, at each stage's end and at the end the clients of
`personalization.population` are personalized and evaluated (the headline
population first; evaluations before the last may use `interim_*` samples,
the last is complete). Every `personalization.track_every` rounds a fixed
sample of the headline clients is measured for rounds to target (initial
accuracy, Pers.k of `track_epochs`; pfl.engine.targets).

With `replicas` (pfl.engine.replicas) the module holds R replicas, each with its own seed, data,
parameters, server optimizers and states, per-client state and history; their clients train in one
`run_replicas` call per round and each replica is evaluated as a run of its own. Replica 0 keeps
the names a single run has (`global_params.*`, `client_state.*` in the checkpoint); replica r >= 1
lives under `replica_tensors.<r-1>.*`.

Costs are measured, not estimated: bytes from the tensors actually exchanged
(`algorithm.bytes_exchanged`), and FLOPs of the first round of each stage with
torch's FlopCounterMode (`flops_per_round`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only
import torch
from torch import Tensor, nn

from pfl import rng
from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import FederatedData
from pfl.engine.checkpoint import CheckpointError
from pfl.engine.experiment import Stage
from pfl.engine.faults import Diverged
from pfl.engine import names
from pfl.engine.eval_line import eval_line
from pfl.engine.replicas import combine_rows, run_replicas
from pfl.engine.round import Server, cohort_keys
from pfl.evaluation.fairness import beats_local, local_reference
from pfl.evaluation.personalize import PersonalizationResult, personalize
from pfl.evaluation.settings import PersonalizationSettings
from pfl.execution import Backend


log = logging.getLogger("pfl")


@dataclass
class Replica:
    """One independently seeded copy of the run (`replicas=R`; a single run is replica 0)."""

    seed: int
    data: FederatedData
    tensors: nn.Module  # .global_params (ParameterDict) and .client_state (ParameterDict or None)
    server_states: list  # per stage
    history: list = field(default_factory=list)  # this replica's evaluation rows
    track_history: list = field(default_factory=list)  # this replica's tracked rows (rounds to target)
    bytes_total: dict = field(default_factory=lambda: {"down": 0, "up": 0})
    last_eval: dict = field(default_factory=dict)
    local_reference: dict = field(default_factory=dict)  # (population, clients) -> local-only accuracies


class _Tensors(nn.Module):
    """Replica r >= 1's parameters and per-client state (replica 0's are the module's own)."""

    def __init__(self, global_params: nn.ParameterDict, client_state: nn.ParameterDict | None):
        super().__init__()
        self.global_params = global_params
        self.client_state = client_state


class FederatedModule(pl.LightningModule):
    def __init__(
        self,
        data: FederatedData,
        model: nn.Module,
        stages: list[Stage],
        local: LocalTrainer,
        personalize_local: LocalTrainer,
        clients_per_round: int,
        backend: Backend,
        personalization: PersonalizationSettings,
        eval_every: int,
        seed: int,
        eval_chunk_size: int | None = 64,
        local_cache_dir: str | None = None,
        on_evaluation: Callable[[int, dict, dict], None] | None = None,
        replicas: list[tuple[int, FederatedData, dict]] | None = None,
    ):
        """`replicas`: (seed, data, model parameters) of each replica for `replicas=R` > 1 (replica 0
        first, as `seed` and `data`); None: one run of `seed` on `data` from the model's parameters."""
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        for s in stages:  # an algorithm may fix its own number of rounds (centralized: its epochs)
            s.rounds = s.algorithm.rounds if s.algorithm.rounds is not None else s.rounds
        self.stages = stages
        self.local = local
        self.personalize_local = personalize_local
        self.clients_per_round = clients_per_round
        self.backend = backend
        self.personalization = personalization
        self.eval_chunk_size = eval_chunk_size
        self.local_cache_dir = local_cache_dir
        self.eval_every = eval_every
        self.on_evaluation = on_evaluation
        self.interrupt_check: Callable[[], None] | None = None  # raises to stop (a signal); called between client chunks
        self.total_rounds = sum(s.rounds for s in stages)
        # epochs an algorithm reports at (FedAvg-FT's K) join the requested ones
        extra = [k for s in stages for k in s.algorithm.report_epochs]
        self.report_epochs = personalization.report_epochs(extra)
        self.curve_epochs = personalization.curve_length(extra)
        first = stages[0].algorithm
        if replicas is None:
            replicas = [(seed, data, local.task.init_params())]
        self.reps: list[Replica] = []
        more = []
        for i, (rseed, rdata, model_params) in enumerate(replicas):
            # the server's parameters: the model's, or the algorithm's own (AFML's Gaussian encoder)
            init = first.init_population(first.init_global(model_params), len(rdata.train))
            params = nn.ParameterDict({_safe(k): nn.Parameter(v) for k, v in init.items()})
            self._names = {_safe(k): k for k in init}
            # each stage's algorithm state on the server (checkpointed)
            states = [s.algorithm.init_server_state(init, num_clients=len(rdata.train), rounds=s.rounds) for s in stages]
            client_state = None
            state = first.init_client_state(init)
            self._state_names: dict[str, str] = {}
            if state is not None:  # one slot per training client, stacked
                n = len(rdata.train)
                client_state = nn.ParameterDict(
                    {_safe(k): nn.Parameter(v.unsqueeze(0).repeat(n, *[1] * v.dim()), requires_grad=False)
                     for k, v in state.items()})
                self._state_names = {_safe(k): k for k in state}
            if i == 0:  # replica 0 under the names of a single run
                self.global_params, self.client_state = params, client_state
                tensors = self
            else:
                tensors = _Tensors(params, client_state)
                more.append(tensors)
            self.reps.append(Replica(rseed, rdata, tensors, states))
        if more:
            self.replica_tensors = nn.ModuleList(more)
        # local-only references start here (copies: the server's Parameters may share these tensors' storage)
        self._initial = {i: {k: v.detach().clone() for k, v in m.items()} for i, (_, _, m) in enumerate(replicas) if i > 0}
        self.register_buffer("round", torch.zeros((), dtype=torch.int64))
        self.history: list[dict] = []  # one row per evaluation, as logged (replicas: pfl.engine.replicas.combine_rows)
        self.track_history: list[dict] = []  # one row per tracked round, as logged (likewise)
        self.flops: dict[str, int] = {}  # stage name -> FLOPs of its first round (all clients of the cohort)
        self.last_eval: dict = {}
        self._t0 = time.perf_counter()

    # -- plumbing -------------------------------------------------------------
    def params(self, replica: int = 0) -> dict[str, Tensor]:
        return {self._names[k]: v for k, v in self.reps[replica].tensors.global_params.items()}

    # a single run's view: replica 0 (summaries and tests read these)
    @property
    def data(self) -> FederatedData:
        return self.reps[0].data

    @property
    def seed(self) -> int:
        return self.reps[0].seed

    @property
    def server_states(self) -> list:
        return self.reps[0].server_states

    @property
    def bytes_total(self) -> dict:
        return self.reps[0].bytes_total

    def stage_index(self, r: int) -> int:
        end = 0
        for i, s in enumerate(self.stages):
            end += s.rounds
            if r < end:
                return i
        return len(self.stages) - 1

    def configure_optimizers(self):
        opts = []  # stage-major: stage i, replica r is opts[i * R + r]
        param_names = list(self._names.values())
        for s in self.stages:
            for rep in self.reps:
                groups = [{"params": [rep.tensors.global_params[_safe(n)] for n in group_names], **overrides}
                          for group_names, overrides in s.algorithm.param_groups(param_names)]
                opts.append(s.algorithm.server_optimizer(groups, s.server_opt))
        return opts

    def setup(self, stage: str) -> None:
        if self.trainer.world_size > 1:  # each rank computes its share of every client list (pfl.engine.distributed)
            self.backend = self.backend.sharded(self.global_rank, self.trainer.world_size)
        moved: dict[int, FederatedData] = {}  # replicas with identical data share one copy
        for rep in self.reps:
            rep.data = moved.setdefault(id(rep.data), rep.data.to(self.device))
        self.local.task.buffers = {k: v.to(self.device) for k, v in self.local.task.buffers.items()}

    def train_dataloader(self):
        # batches carry nothing: the round counter lives in module state so that
        # a resumed run continues where it stopped.
        return _Rounds(self)

    def cohort(self, r: int, replica: int = 0) -> Tensor:
        rep = self.reps[replica]
        g = torch.Generator().manual_seed(int(rng.key(rep.seed, r, 0xC0407)))
        return torch.randperm(len(rep.data.train), generator=g)[: self.clients_per_round].sort().values

    # -- one round ------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        r = int(self.round)
        si = self.stage_index(r)
        stage = self.stages[si]
        alg = stage.algorithm
        if si > 0 and r == sum(s.rounds for s in self.stages[:si]):
            _info(f"round {r}: stage {si} ({stage.name}) begins")
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        R = len(self.reps)
        servers, datas, keys, bkeys, states, cohort_ids = [], [], [], [], [], []
        for i, rep in enumerate(self.reps):
            opt = opts[si * R + i]
            if i > 0:  # Lightning counts rounds by optimizer steps: only replica 0's step goes through it
                opt = getattr(opt, "optimizer", opt)
            data, ids = alg.client_data(rep.data.train.train, self.cohort(r, i).to(self.device))
            datas.append(data)
            cohort_ids.append(ids)
            keys.append(cohort_keys(rep.seed, r, ids).to(self.device))
            bkeys.append(rng.key(rep.seed, r, 0x5E4D).to(self.device))
            cs = rep.tensors.client_state
            states.append(None if cs is None else {self._state_names[k]: v[ids] for k, v in cs.items()})
            servers.append(Server(self.params(i), opt, _on(rep.server_states[si], self.device)))
        self.model.train()
        outs = run_replicas(alg, self.local, self.backend, servers, datas, keys, bkeys, states,
                            count_flops=stage.name not in self.flops, ids=cohort_ids)  # FLOPs: the stage's first round
        rows = []
        for i, (rep, server, ids, out) in enumerate(zip(self.reps, servers, cohort_ids, outs)):
            rep.server_states[si] = server.state
            if out.flops is not None:
                self.flops[stage.name] = self.backend.shard.total(out.flops)  # every rank's share
            if out.client_state is not None:
                with torch.no_grad():
                    for k, v in rep.tensors.client_state.items():
                        v[ids] = out.client_state[self._state_names[k]].to(v.dtype)
            rep.bytes_total["down"] += out.bytes_down
            rep.bytes_total["up"] += out.bytes_up
            metrics = {names.train(k): v for k, v in out.metrics.items()}
            metrics.update({names.server(k): v for k, v in out.server_metrics.items()})
            bad = next(((k.removeprefix("train/"), v) for k, v in metrics.items() if not math.isfinite(v)), None)
            if bad is None and not bool(torch.stack([torch.isfinite(p).all()
                                                     for p in rep.tensors.global_params.values()]).all()):
                bad = ("server parameters", "nan/inf after the update")
            if bad is not None:  # a clean stop (pfl.engine.faults): the last good checkpoint stays as it is
                raise Diverged(r + 1, *((f"{bad[0]} of replica {i}", bad[1]) if R > 1 else bad))
            metrics.update({names.ROUND: r + 1, names.STAGE: si, names.BYTES_DOWN: out.bytes_down,
                            names.BYTES_UP: out.bytes_up, names.BYTES_DOWN_TOTAL: rep.bytes_total["down"],
                            names.BYTES_UP_TOTAL: rep.bytes_total["up"]})
            rows.append(metrics)
        self.round += 1
        track_every = self.personalization.track_every
        if track_every and ((r + 1) % track_every == 0 or r + 1 == self.total_rounds):
            for i, row in enumerate(rows):
                row.update(self.track(r + 1, i))
            self.track_history.append(combine_rows([rep.track_history[-1] for rep in self.reps]))
        shown = combine_rows(rows)
        self.log("loss", shown.get(names.train("loss"), float("nan")), prog_bar=True, on_step=True, logger=False)
        stage_end = sum(s.rounds for s in self.stages[: si + 1])
        if (r + 1) % self.eval_every == 0 or r + 1 == self.total_rounds or r + 1 == stage_end:
            self.evaluate_and_log(r + 1, rows)  # also at each stage's end: the model a stage hands on
        elif (r + 1) % max(int(getattr(self.trainer, "log_every_n_steps", 1) or 1), 1) == 0:
            self._log_row(shown, r + 1)

    def track(self, r: int, replica: int = 0) -> dict:
        """Rounds-to-target measurement after round r: the tracked sample of the headline clients,
        initial accuracy (forward only) and Pers.k for `track_epochs`; kept in the replica's
        `track_history` (with the bytes spent so far, for summary.own_target)."""
        t = time.perf_counter()
        p = self.personalization
        rep = self.reps[replica]
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

    def _log_row(self, row: dict, r: int) -> None:
        """One row to every logger at step = round: the round's training metrics, and the evaluation's."""
        metrics = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != names.ROUND}
        metrics.setdefault(names.WALL_S, time.perf_counter() - self._t0)
        for lg in self.loggers:
            lg.log_metrics(metrics, step=r)

    # -- personalization evaluation -------------------------------------------
    def personalize(self, population: str, clients: Tensor | None = None, progress=None,
                    replica: int = 0, epochs: int | None = None) -> PersonalizationResult:
        rep = self.reps[replica]
        pop = getattr(rep.data, population)
        if clients is None:
            clients = torch.arange(len(pop))
        alg = self.stages[self.stage_index(max(int(self.round) - 1, 0))].algorithm
        params = {k: v.detach() for k, v in self.params(replica).items()}  # the server's state; adapt reads the model from it
        state = None  # training clients are personalized from their own per-client state (held-out ones have none)
        cs = rep.tensors.client_state
        if population == "train" and cs is not None and len(cs):
            rows = clients.to(cs[next(iter(cs))].device)
            state = {self._state_names[k]: v.detach()[rows] for k, v in cs.items()}
        if population == "train":  # what the server addresses to each training client (broadcast_each)
            with torch.no_grad():
                each = alg.broadcast_each(params, clients.to(self.device))
            state = state if each is None else {**(state or {}), **each}
        self.model.train()
        return personalize(
            alg, self.personalize_local, params, pop, clients.to(self.device),
            self.curve_epochs if epochs is None else epochs, self._personalize_key(population, replica), self.backend, self.eval_chunk_size, progress=progress,
            state=state,
        )

    def _personalize_key(self, population: str, replica: int = 0) -> Tensor:
        """The minibatch stream of a population's personalization; the local-only reference uses the same one,
        so that its Acc_local is exactly the `local` algorithm's personalization (common random numbers)."""
        return rng.key(self.reps[replica].seed, 0xE7A1, 1 if population == "heldout" else 2).to(self.device)

    def local_reference(self, population: str, clients: Tensor, progress=None, replica: int = 0) -> Tensor:
        """Per-client accuracy of a model trained on the client alone (the
        `local` algorithm's personalization from the initial model). It does
        not depend on the server's model: computed once per run (and cached
        on disk across runs when `local_cache_dir` is set)."""
        p = self.personalization
        rep = self.reps[replica]
        key = (population, tuple(int(c) for c in clients))
        if key not in rep.local_reference:
            init = {k: v.detach() for k, v in self.local.task.init_params().items()}
            if replica > 0:  # the replica's own initial model (the model object holds replica 0's)
                init = {k: v.detach().to(init[k].device) for k, v in self._initial[replica].items()}
            rep.local_reference[key] = local_reference(
                self.personalize_local, init, getattr(rep.data, population), clients.to(self.device),
                p.local_epochs, p.local_lr, self._personalize_key(population, replica),
                self.backend, self.eval_chunk_size, self.local_cache_dir, progress,
            )
        return rep.local_reference[key]

    def eval_clients(self, population: str, replica: int = 0) -> Tensor:
        """The clients of the complete (last) evaluation of `population`: all, or a fixed seeded sample."""
        rep = self.reps[replica]
        n = len(getattr(rep.data, population))
        p = self.personalization
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
        g = torch.Generator().manual_seed(int(rng.key(self.reps[replica].seed, 0x7AC4, len(population))))
        return full[torch.randperm(len(full), generator=g)[:limit]].sort().values

    def _eval_bar(self, r: int, total: int):
        """A progress bar over the evaluation's clients, below the rounds bar (rank 0, when bars are on)."""
        if not self.trainer.is_global_zero or self.trainer.progress_bar_callback is None or total == 0:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=f"evaluation (round {r})", unit="client", position=1, leave=False,
                    dynamic_ncols=True)

    def _ticker(self, bar):
        """The evaluation's progress callback: advance the bar, and stop here if a stop was asked for."""
        def tick(n: int) -> None:
            if bar is not None:
                bar.update(n)
            if self.interrupt_check is not None:
                self.interrupt_check()

        return tick

    def evaluate_and_log(self, r: int, train_metrics) -> dict:
        """Evaluate every replica (`train_metrics`: its training row, or a list of one per replica),
        log the row (pfl.engine.replicas.combine_rows for R > 1) and return it."""
        t_eval = time.perf_counter()
        rows_in = train_metrics if isinstance(train_metrics, list) else [train_metrics]
        p = self.personalization
        final = r >= self.total_rounds  # the last evaluation is complete; earlier ones may be samples
        plans = [{pop: self.eval_clients(pop, i) if final else self.sample(pop, p.interim_clients, i)
                  for pop in p.populations()} for i in range(len(self.reps))]
        extra = [k for s in self.stages for k in s.algorithm.report_epochs]
        epochs = self.curve_epochs if final else p.interim_curve_length(extra)
        total = 0
        for i, (rep, plan) in enumerate(zip(self.reps, plans)):
            total += sum(len(c) for c in plan.values())
            full = self.eval_clients(p.headline, i)  # Acc_local: once for the complete headline set, then indexed
            if p.local_baseline and (p.headline, tuple(int(c) for c in full)) not in rep.local_reference:
                total += len(full)  # the local-only reference is computed on the first evaluation
        bar = self._eval_bar(r, total)
        tick = None if bar is None and self.interrupt_check is None else self._ticker(bar)
        rows = []
        for i, (rep, plan, row_in) in enumerate(zip(self.reps, plans, rows_in)):
            results, row = self._evaluate(r, i, plan, dict(row_in), tick, epochs)
            row[names.EVAL_S] = time.perf_counter() - t_eval  # seconds this evaluation took (so far: all replicas)
            row[names.EVAL_CLIENTS] = total
            row[names.WALL_S] = time.perf_counter() - self._t0
            rep.history.append(row)
            rep.last_eval = {"row": row, "results": results}
            rows.append(row)
        if bar is not None:
            bar.close()
        row = combine_rows(rows)
        self.history.append(row)
        self.last_eval = self.reps[0].last_eval if len(self.reps) == 1 else {"row": row, "results": {}}
        if self.on_evaluation is not None:
            self.on_evaluation(r, row, self.reps[0].last_eval["results"])
        self._log_row(row, r)
        _info(eval_line(r, names.PREFIX[p.headline], rows, len(plans[0].get(p.headline, [])),
                        len(self.eval_clients(p.headline, 0)), row[names.EVAL_S]))  # sample size, ± std over replicas
        return row

    def _evaluate(self, r: int, replica: int, plan: dict, row: dict, tick, epochs: int) -> tuple[dict, dict]:
        """One replica's evaluation: (results per population, its row); `epochs`: the curve's length."""
        results = {}
        head = self.personalization.headline
        for pop, clients in plan.items():
            if len(clients) == 0:
                continue
            res = self.personalize(pop, clients, tick, replica, epochs=epochs)
            if pop == head and self.personalization.local_baseline:
                full = self.eval_clients(pop, replica)
                ref = self.local_reference(pop, full, tick, replica)
                res.local_accuracy = ref[torch.searchsorted(full, clients.cpu())]
                for k, frac in beats_local(res, self.report_epochs).items():
                    row[names.beats_local(k, pop)] = frac
                row[names.local(pop)] = float(res.local_accuracy[res.num_test > 0].mean())
            results[pop] = res
            curve = res.mean_accuracy()
            row[names.initial(pop)] = float(curve[0])
            for k in self.report_epochs:
                row[names.pers(k, pop)] = float(curve[k])
            acc = res.accuracy
            last = max(self.report_epochs, default=0)
            valid = res.num_test > 0
            row[names.worse(last, pop)] = float((acc[valid, last] < acc[valid, 0]).double().mean())
            row[names.curve(pop)] = [float(c) for c in curve]
        return results, row

    # -- checkpoint -----------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["pfl"] = {
            "history": self.history,
            "track_history": self.track_history,
            "bytes_total": dict(self.bytes_total),
            "flops": dict(self.flops),
            "rng": {"torch": torch.get_rng_state()},
            "param_names": dict(self._names),
            "server_states": self.server_states,
        }
        if len(self.reps) > 1:  # every replica's own records (replica 0's also under the keys above)
            checkpoint["pfl"]["replicas"] = [{"history": rep.history, "bytes_total": dict(rep.bytes_total),
                                              "server_states": rep.server_states, "track_history": rep.track_history}
                                             for rep in self.reps]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        extra = checkpoint.get("pfl", {})
        self.history = list(extra.get("history", []))
        self.track_history = list(extra.get("track_history", []))
        self.flops = dict(extra.get("flops", {}))
        saved = extra.get("replicas")
        if saved is None:
            saved = [{"history": self.history, "bytes_total": extra.get("bytes_total", {"down": 0, "up": 0}),
                      "track_history": self.track_history,
                      **({"server_states": extra["server_states"]} if "server_states" in extra else {})}]
        if len(saved) != len(self.reps):
            raise CheckpointError("resume", "", f"resume: the checkpoint holds {len(saved)} replica(s), the run "
                                  f"has replicas={len(self.reps)}")
        for rep, s in zip(self.reps, saved):
            rep.history = list(s["history"])
            rep.bytes_total = dict(s["bytes_total"])
            rep.track_history = list(s.get("track_history", []))
            if "server_states" in s:
                rep.server_states = list(s["server_states"])
        if "rng" in extra:
            torch.set_rng_state(extra["rng"]["torch"])


def _on(state, device):
    """An algorithm's server state on the round's device: one restored from a checkpoint lies where Lightning
    loaded it (the CPU), also when the run resumes on CUDA (tests/gpu/test_cuda_checkpoint.py)."""
    from torch.utils._pytree import tree_map

    return tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, state)


class _Rounds:
    """The 'data loader' of the fit loop: round numbers from the module's own
    counter to the end. It has no state of its own (the round lives in the
    module's checkpointed buffer), which is what state_dict says to Lightning."""

    def __init__(self, module: FederatedModule):
        self.module = module

    def __len__(self) -> int:
        return self.module.total_rounds

    def __iter__(self):
        return iter(range(int(self.module.round), self.module.total_rounds))

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _info(message: str) -> None:
    """To the console and pfl.log, once (rank 0)."""
    if rank_zero_only.rank == 0:
        log.info(message)


def _safe(name: str) -> str:
    """ParameterDict keys may not contain dots."""
    return name.replace(".", "__")
