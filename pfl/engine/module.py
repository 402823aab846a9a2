"""The LightningModule: one `training_step` is one communication round.

Lightning drives the rounds (progress bar, loggers, devices, checkpoint
save/restore); the round itself is `pfl.engine.round.run_round`, and this
module only schedules it and knows no particular algorithm. Per round:

    cohort ids (seeded by seed and round) -> algorithm.client_data (padded, on device)
    -> run_round: broadcast, backend.map(client_update), aggregate, server_update
    -> per-client state written back, bytes and metrics logged

A run is a list of stages (one for most algorithms; Personalized FedAvg has
two), each with its own algorithm, server optimizer and number of rounds.
The module wires Lightning's hooks to small objects: the replicas' state
(pfl.engine.replica_state, also what a checkpoint holds beside the tensors) and
the evaluation's schedule and measurements (pfl.engine.evaluator).

With `replicas` the module holds R replicas, each with its own seed, data, parameters, server
optimizers and states, per-client state and history; their clients train in one `run_replicas`
call per round (pfl.engine.replicas) and each replica is evaluated as a run of its own.

Costs are measured, not estimated: bytes from the tensors actually exchanged
(`algorithm.bytes_exchanged`), and FLOPs of the first round of each stage with
torch's FlopCounterMode (`flops_per_round`).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only
import torch
from torch import Tensor, nn

from pfl import rng
from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import FederatedData
from pfl.engine.eval_line import eval_line
from pfl.engine.evaluator import EvalSetup, Evaluator, RunState
from pfl.engine.experiment import Stage
from pfl.engine.faults import Diverged
from pfl.engine import names
from pfl.engine.replica_state import Replica, ReplicaTensors, init_replica, load_records, safe, save_records
from pfl.engine.replicas import combine_rows, run_replicas
from pfl.engine.round import Server, cohort_keys
from pfl.evaluation.personalize import PersonalizationResult
from pfl.evaluation.settings import PersonalizationSettings
from pfl.execution import Backend


log = logging.getLogger("pfl")
TRACK_KEYS = (names.ROUND, names.BYTES_DOWN_TOTAL, names.BYTES_UP_TOTAL)  # a tracked row's keys the training row has


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
        count_flops: bool = True,
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
        # epochs an algorithm reports at (the local-only baseline's) join the requested ones
        extra = [k for s in stages for k in s.algorithm.report_epochs]
        self.report_epochs = personalization.report_epochs(extra)
        self.curve_epochs = personalization.curve_length(extra)
        self._init_replicas(replicas or [(seed, data, local.task.init_params())])
        self.evaluator = Evaluator(EvalSetup(
            stages, model, personalization, personalize_local, backend, eval_every, eval_chunk_size, local_cache_dir,
            self._initial, self.total_rounds, self.curve_epochs, tuple(self.report_epochs)))
        self.register_buffer("round", torch.zeros((), dtype=torch.int64))
        self.history: list[dict] = []  # one row per evaluation, as logged (replicas: pfl.engine.replicas.combine_rows)
        self.track_history: list[dict] = []  # one row per tracked round, as logged (likewise)
        self.flops: dict[str, int] = {}  # stage name -> FLOPs of its first round (all clients of the cohort)
        self.count_flops = count_flops  # False: flops stays empty (summary: flops_per_round {}, estimate null)
        self.last_eval: dict = {}
        self._t0 = time.perf_counter()

    def _init_replicas(self, replicas: list[tuple[int, FederatedData, dict]]) -> None:
        self.reps: list[Replica] = []
        more = []
        for i, (rseed, rdata, model_params) in enumerate(replicas):
            params, client_state, states, self._names, self._state_names = init_replica(
                self.stages, model_params, len(rdata.train))
            if i == 0:  # replica 0 under the names of a single run
                self.global_params, self.client_state = params, client_state
                tensors = self
            else:
                tensors = ReplicaTensors(params, client_state)
                more.append(tensors)
            self.reps.append(Replica(rseed, rdata, tensors, states))
        if more:
            self.replica_tensors = nn.ModuleList(more)
        # local-only references start here (copies: the server's Parameters may share these tensors' storage)
        self._initial = {i: {k: v.detach().clone() for k, v in m.items()} for i, (_, _, m) in enumerate(replicas) if i > 0}

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
                groups = [{"params": [rep.tensors.global_params[safe(n)] for n in group_names], **overrides}
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
        if si > 0 and r == sum(s.rounds for s in self.stages[:si]):
            _info(f"round {r}: stage {si} ({stage.name}) begins")
        servers, datas, keys, bkeys, states, cohort_ids = self._round_inputs(r, si)
        self.model.train()
        outs = run_replicas(stage.algorithm, self.local, self.backend, servers, datas, keys, bkeys, states,
                            count_flops=self.count_flops and stage.name not in self.flops, ids=cohort_ids)  # its first round
        rows = [self._round_result(r, si, i, server, ids, out)
                for i, (server, ids, out) in enumerate(zip(servers, cohort_ids, outs))]
        self.round += 1
        if self.evaluator.tracks_after(r + 1):
            run = self.run_state()
            for i, (rep, row) in enumerate(zip(self.reps, rows)):
                rep.track_history.append(self.evaluator.track(run, r + 1, i))
                row.update({k: v for k, v in rep.track_history[-1].items() if k not in TRACK_KEYS})
            self.track_history.append(combine_rows([rep.track_history[-1] for rep in self.reps]))
        shown = combine_rows(rows)
        self.log("loss", shown.get(names.train("loss"), float("nan")), prog_bar=True, on_step=True, logger=False)
        if self.evaluator.evaluates_after(r + 1):
            self.evaluate_and_log(r + 1, rows)  # also at each stage's end: the model a stage hands on
        elif (r + 1) % max(int(getattr(self.trainer, "log_every_n_steps", 1) or 1), 1) == 0:
            self._log_row(shown, r + 1)

    def _round_inputs(self, r: int, si: int) -> tuple[list, ...]:
        """Per replica: its Server, the cohort's data, client and broadcast keys, client states, cohort ids."""
        alg = self.stages[si].algorithm
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        servers, datas, keys, bkeys, states, cohort_ids = [], [], [], [], [], []
        for i, rep in enumerate(self.reps):
            opt = opts[si * len(self.reps) + i]
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
        return servers, datas, keys, bkeys, states, cohort_ids

    def _round_result(self, r: int, si: int, i: int, server: Server, ids: Tensor, out) -> dict:
        """Replica i's round outcome into its state and records; its training row (Diverged on nan/inf)."""
        rep, stage = self.reps[i], self.stages[si]
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
            raise Diverged(r + 1, *((f"{bad[0]} of replica {i}", bad[1]) if len(self.reps) > 1 else bad))
        metrics.update({names.ROUND: r + 1, names.STAGE: si, names.BYTES_DOWN: out.bytes_down,
                        names.BYTES_UP: out.bytes_up, names.BYTES_DOWN_TOTAL: rep.bytes_total["down"],
                        names.BYTES_UP_TOTAL: rep.bytes_total["up"]})
        return metrics

    def _log_row(self, row: dict, r: int) -> None:
        """One row to every logger at step = round: the round's training metrics, and the evaluation's."""
        metrics = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != names.ROUND}
        metrics.setdefault(names.WALL_S, time.perf_counter() - self._t0)
        for lg in self.loggers:
            lg.log_metrics(metrics, step=r)

    # -- evaluation (pfl.engine.evaluator) ----------------------------------------
    def run_state(self) -> RunState:
        """What an evaluation reads of the run now."""
        alg = self.stages[self.stage_index(max(int(self.round) - 1, 0))].algorithm
        return RunState(self.reps, self.params, self._state_names, alg, self.device)

    def evaluate_and_log(self, r: int, train_metrics) -> dict:
        """Evaluate every replica (`train_metrics`: its training row, or a list of one per replica), keep
        the rows in the histories, log the row (pfl.engine.replicas.combine_rows for R > 1) and return it."""
        t_eval = time.perf_counter()
        rows_in = train_metrics if isinstance(train_metrics, list) else [train_metrics]
        run = self.run_state()
        plans, epochs, total = self.evaluator.plan(run, r)
        bar = self._eval_bar(r, total)
        tick = None if bar is None and self.interrupt_check is None else self._ticker(bar)
        rows = []
        for i, (rep, plan, row_in) in enumerate(zip(self.reps, plans, rows_in)):
            results, row = self.evaluator.evaluate(run, r, i, plan, dict(row_in), tick, epochs)
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
        head = self.personalization.headline
        _info(eval_line(r, names.PREFIX[head], rows, len(plans[0].get(head, [])),
                        len(self.eval_clients(head, 0)), row[names.EVAL_S]))  # sample size, ± std over replicas
        return row

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

    def personalize(self, population: str, clients: Tensor | None = None, progress=None,
                    replica: int = 0, epochs: int | None = None) -> PersonalizationResult:
        return self.evaluator.personalize(self.run_state(), population, clients, progress, replica, epochs)

    def eval_clients(self, population: str, replica: int = 0) -> Tensor:
        return self.evaluator.eval_clients(self.run_state(), population, replica)

    def sample(self, population: str, limit: int | None, replica: int = 0) -> Tensor:
        return self.evaluator.sample(self.run_state(), population, limit, replica)

    # -- checkpoint (pfl.engine.replica_state) ---------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        save_records(self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        load_records(self, checkpoint)


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


def _on(state, device):
    """An algorithm's server state on the round's device: one restored from a checkpoint lies where Lightning
    loaded it (the CPU), also when the run resumes on CUDA (tests/gpu/test_cuda_checkpoint.py)."""
    from torch.utils._pytree import tree_map

    return tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, state)
