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
accuracy, Pers.k of `track_epochs`).

Costs are measured, not estimated: bytes from the tensors actually exchanged
(`algorithm.bytes_exchanged`), and FLOPs of the first round of each stage with
torch's FlopCounterMode (`flops_per_round`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only
import torch
from torch import Tensor, nn

from pfl import rng
from pfl.algorithms.base import Algorithm
from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import FederatedData
from pfl.engine.faults import Diverged
from pfl.engine import names
from pfl.engine.round import Server, cohort_keys, run_round
from pfl.evaluation.fairness import beats_local, local_reference
from pfl.evaluation.personalize import PersonalizationResult, personalize
from pfl.evaluation.settings import PersonalizationSettings
from pfl.execution import Backend


log = logging.getLogger("pfl")


@dataclass
class Stage:
    algorithm: Algorithm
    server_opt: Callable  # partial torch optimizer: f(param_groups) -> Optimizer
    rounds: int
    name: str


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
    ):
        super().__init__()
        self.automatic_optimization = False
        self.data = data
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
        self.seed = seed
        self.on_evaluation = on_evaluation
        self.interrupt_check: Callable[[], None] | None = None  # raises to stop (a signal); called between client chunks
        self.total_rounds = sum(s.rounds for s in stages)
        # epochs an algorithm reports at (FedAvg-FT's K) join the requested ones
        extra = [k for s in stages for k in s.algorithm.report_epochs]
        self.report_epochs = personalization.report_epochs(extra)
        self.curve_epochs = personalization.curve_length(extra)
        first = stages[0].algorithm
        # the server's parameters: the model's, or the algorithm's own (AFML's Gaussian encoder)
        init = first.init_global(local.task.init_params())
        self.global_params = nn.ParameterDict({_safe(k): nn.Parameter(v) for k, v in init.items()})
        self._names = {_safe(k): k for k in init}
        # each stage's algorithm state on the server (checkpointed)
        self.server_states = [s.algorithm.init_server_state(init, num_clients=len(data.train), rounds=s.rounds)
                              for s in stages]
        state = first.init_client_state(init)
        self.client_state = None
        self._state_names: dict[str, str] = {}
        if state is not None:  # one slot per training client, stacked
            n = len(data.train)
            self.client_state = nn.ParameterDict(
                {_safe(k): nn.Parameter(v.unsqueeze(0).repeat(n, *[1] * v.dim()), requires_grad=False) for k, v in state.items()}
            )
            self._state_names = {_safe(k): k for k in state}
        self.register_buffer("round", torch.zeros((), dtype=torch.int64))
        self.history: list[dict] = []  # one dict per evaluation (kept in the checkpoint)
        self.track_history: list[dict] = []  # one dict per tracked round (kept in the checkpoint)
        self.bytes_total = {"down": 0, "up": 0}
        self.flops: dict[str, int] = {}  # stage name -> FLOPs of its first round (all clients of the cohort)
        self._local_reference: dict = {}  # (population, clients) -> local-only accuracies (computed once)
        self.last_eval: dict = {}
        self._t0 = time.perf_counter()

    # -- plumbing -------------------------------------------------------------
    def params(self) -> dict[str, Tensor]:
        return {self._names[k]: v for k, v in self.global_params.items()}

    def stage_index(self, r: int) -> int:
        end = 0
        for i, s in enumerate(self.stages):
            end += s.rounds
            if r < end:
                return i
        return len(self.stages) - 1

    def configure_optimizers(self):
        opts = []
        param_names = list(self._names.values())
        for s in self.stages:
            groups = [{"params": [self.global_params[_safe(n)] for n in group_names], **overrides}
                      for group_names, overrides in s.algorithm.param_groups(param_names)]
            opts.append(s.algorithm.server_optimizer(groups, s.server_opt))
        return opts

    def setup(self, stage: str) -> None:
        if self.trainer.world_size > 1:  # each rank computes its share of every client list (pfl.engine.distributed)
            self.backend = self.backend.sharded(self.global_rank, self.trainer.world_size)
        self.data = self.data.to(self.device)
        self.local.task.buffers = {k: v.to(self.device) for k, v in self.local.task.buffers.items()}

    def train_dataloader(self):
        # batches carry nothing: the round counter lives in module state so that
        # a resumed run continues where it stopped.
        return _Rounds(self)

    def cohort(self, r: int) -> Tensor:
        g = torch.Generator().manual_seed(int(rng.key(self.seed, r, 0xC0407)))
        return torch.randperm(len(self.data.train), generator=g)[: self.clients_per_round].sort().values

    # -- one round ------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        r = int(self.round)
        si = self.stage_index(r)
        stage = self.stages[si]
        alg = stage.algorithm
        if si > 0 and r == sum(s.rounds for s in self.stages[:si]):
            _info(f"round {r}: stage {si} ({stage.name}) begins")
        opts = self.optimizers()
        opt = opts[si] if isinstance(opts, list) else opts

        data, ids = alg.client_data(self.data.train.train, self.cohort(r).to(self.device))
        keys = cohort_keys(self.seed, r, ids).to(self.device)
        state = None
        if self.client_state is not None:
            state = {self._state_names[k]: v[ids] for k, v in self.client_state.items()}
        self.model.train()
        server = Server(self.params(), opt, self.server_states[si])
        out = run_round(alg, self.local, self.backend, server, data, keys,
                        rng.key(self.seed, r, 0x5E4D).to(self.device), state,
                        count_flops=stage.name not in self.flops)  # measure the stage's first round
        self.server_states[si] = server.state
        if out.flops is not None:
            self.flops[stage.name] = self.backend.shard.total(out.flops)  # every rank's share
        if out.client_state is not None:
            with torch.no_grad():
                for k, v in self.client_state.items():
                    v[ids] = out.client_state[self._state_names[k]].to(v.dtype)
        self.round += 1

        self.bytes_total["down"] += out.bytes_down
        self.bytes_total["up"] += out.bytes_up
        metrics = {names.train(k): v for k, v in out.metrics.items()}
        metrics.update({names.server(k): v for k, v in out.server_metrics.items()})
        bad = next(((k.removeprefix("train/"), v) for k, v in metrics.items() if not math.isfinite(v)), None)
        if bad is None and not bool(torch.stack([torch.isfinite(p).all() for p in self.global_params.values()]).all()):
            bad = ("server parameters", "nan/inf after the update")
        if bad is not None:  # a clean stop (pfl.engine.faults): the last good checkpoint stays as it is
            raise Diverged(r + 1, *bad)
        metrics.update({names.ROUND: r + 1, names.STAGE: si, names.BYTES_DOWN: out.bytes_down,
                        names.BYTES_UP: out.bytes_up, names.BYTES_DOWN_TOTAL: self.bytes_total["down"],
                        names.BYTES_UP_TOTAL: self.bytes_total["up"]})
        self.log("loss", metrics.get(names.train("loss"), float("nan")), prog_bar=True, on_step=True, logger=False)
        track_every = self.personalization.track_every
        if track_every and ((r + 1) % track_every == 0 or r + 1 == self.total_rounds):
            metrics.update(self.track(r + 1))
        stage_end = sum(s.rounds for s in self.stages[: si + 1])
        if (r + 1) % self.eval_every == 0 or r + 1 == self.total_rounds or r + 1 == stage_end:
            metrics = self.evaluate_and_log(r + 1, metrics)  # also at each stage's end: the model a stage hands on
        elif (r + 1) % max(int(getattr(self.trainer, "log_every_n_steps", 1) or 1), 1) == 0:
            self._log_row(metrics, r + 1)

    def track(self, r: int) -> dict:
        """Rounds-to-target measurement after round r: the tracked sample of the headline clients,
        initial accuracy (forward only) and Pers.k for `track_epochs`; kept in `track_history`."""
        t = time.perf_counter()
        p = self.personalization
        clients = self.sample(p.headline, p.track_clients)
        ks = sorted(set(int(k) for k in p.track_epochs))
        row = {}
        if len(clients):
            curve = self.personalize(p.headline, clients, epochs=max(ks, default=0)).mean_accuracy()
            row = {names.tracked(k): float(curve[k]) for k in [0, *ks]}
        row[names.TRACK_S] = time.perf_counter() - t
        self.track_history.append({names.ROUND: r, names.BYTES_DOWN_TOTAL: self.bytes_total["down"],
                                   names.BYTES_UP_TOTAL: self.bytes_total["up"], **row})
        return row

    def _log_row(self, row: dict, r: int) -> None:
        """One row to every logger at step = round: the round's training metrics, and the evaluation's."""
        metrics = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != names.ROUND}
        metrics.setdefault(names.WALL_S, time.perf_counter() - self._t0)
        for lg in self.loggers:
            lg.log_metrics(metrics, step=r)

    # -- personalization evaluation -------------------------------------------
    def personalize(self, population: str, clients: Tensor | None = None, progress=None,
                    epochs: int | None = None) -> PersonalizationResult:
        pop = getattr(self.data, population)
        if clients is None:
            clients = torch.arange(len(pop))
        alg = self.stages[self.stage_index(max(int(self.round) - 1, 0))].algorithm
        params = {k: v.detach() for k, v in self.params().items()}  # the server's state; adapt reads the model from it
        state = None  # training clients are personalized from their own per-client state (held-out ones have none)
        if population == "train" and self.client_state is not None and len(self.client_state):
            rows = clients.to(self.client_state[next(iter(self.client_state))].device)
            state = {self._state_names[k]: v.detach()[rows] for k, v in self.client_state.items()}
        self.model.train()
        return personalize(
            alg, self.personalize_local, params, pop, clients.to(self.device),
            self.curve_epochs if epochs is None else epochs,
            self._personalize_key(population), self.backend, self.eval_chunk_size, progress=progress, state=state,
        )

    def _personalize_key(self, population: str) -> Tensor:
        """The minibatch stream of a population's personalization; the local-only reference uses the same one,
        so that its Acc_local is exactly the `local` algorithm's personalization (common random numbers)."""
        return rng.key(self.seed, 0xE7A1, 1 if population == "heldout" else 2).to(self.device)

    def local_reference(self, population: str, clients: Tensor, progress=None) -> Tensor:
        """Per-client accuracy of a model trained on the client alone (the
        `local` algorithm's personalization from the initial model). It does
        not depend on the server's model: computed once per run (and cached
        on disk across runs when `local_cache_dir` is set)."""
        p = self.personalization
        key = (population, tuple(int(c) for c in clients))
        if key not in self._local_reference:
            init = {k: v.detach() for k, v in self.local.task.init_params().items()}
            self._local_reference[key] = local_reference(
                self.personalize_local, init, getattr(self.data, population), clients.to(self.device),
                p.local_epochs, p.local_lr, self._personalize_key(population),
                self.backend, self.eval_chunk_size, self.local_cache_dir, progress,
            )
        return self._local_reference[key]

    def eval_clients(self, population: str) -> Tensor:
        """The clients of the complete (last) evaluation of `population`: all, or a fixed seeded sample."""
        n = len(getattr(self.data, population))
        p = self.personalization
        limit = p.heldout_clients if population == "heldout" else p.train_clients
        if limit is None or limit >= n:
            return torch.arange(n)
        g = torch.Generator().manual_seed(int(rng.key(self.seed, 0x5A3E, len(population))))
        return torch.randperm(n, generator=g)[:limit].sort().values

    def sample(self, population: str, limit: int | None) -> Tensor:
        """A fixed seeded sample of `limit` of eval_clients(population) (None: all of them); the interim
        and tracked samples both come from this one order, so the smaller is inside the larger."""
        full = self.eval_clients(population)
        if limit is None or limit >= len(full):
            return full
        g = torch.Generator().manual_seed(int(rng.key(self.seed, 0x7AC4, len(population))))
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

    def evaluate_and_log(self, r: int, train_metrics: dict) -> dict:
        t_eval = time.perf_counter()
        results = {}
        row = dict(train_metrics)
        p = self.personalization
        final = r >= self.total_rounds  # the last evaluation is complete; earlier ones may be samples
        pops = p.populations()
        plan = {pop: self.eval_clients(pop) if final else self.sample(pop, p.interim_clients) for pop in pops}
        extra = [k for s in self.stages for k in s.algorithm.report_epochs]
        epochs = self.curve_epochs if final else p.interim_curve_length(extra)
        head = p.headline
        full_head = self.eval_clients(head)  # Acc_local: once for the complete headline set, then indexed
        total = sum(len(c) for c in plan.values())
        if p.local_baseline and (head, tuple(int(c) for c in full_head)) not in self._local_reference:
            total += len(full_head)  # the local-only reference is computed on the first evaluation
        bar = self._eval_bar(r, total)
        tick = None if bar is None and self.interrupt_check is None else self._ticker(bar)
        for pop, clients in plan.items():
            if len(clients) == 0:
                continue
            res = self.personalize(pop, clients, tick, epochs=epochs)
            if pop == head and p.local_baseline:
                ref = self.local_reference(pop, full_head, tick)
                res.local_accuracy = ref[torch.searchsorted(full_head, clients.cpu())]
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
        if bar is not None:
            bar.close()
        row[names.EVAL_S] = time.perf_counter() - t_eval  # seconds this evaluation took
        row[names.EVAL_CLIENTS] = total
        row[names.WALL_S] = time.perf_counter() - self._t0
        self.history.append(row)
        self.last_eval = {"row": row, "results": results}
        if self.on_evaluation is not None:
            self.on_evaluation(r, row, results)
        self._log_row(row, r)
        prefix = names.PREFIX[head] + "/"
        shown = {k.replace(prefix, ""): v for k, v in row.items()
                 if k.startswith(prefix) and isinstance(v, float) and "frac" not in k}
        _info(f"round {r}: {names.PREFIX[head]} " + ", ".join(f"{k}={v:.4f}" for k, v in shown.items())
              + f" (evaluation {row[names.EVAL_S]:.1f} s)")
        return row

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

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        extra = checkpoint.get("pfl", {})
        self.history = list(extra.get("history", []))
        self.track_history = list(extra.get("track_history", []))
        self.bytes_total = dict(extra.get("bytes_total", {"down": 0, "up": 0}))
        self.flops = dict(extra.get("flops", {}))
        if "server_states" in extra:
            self.server_states = list(extra["server_states"])
        if "rng" in extra:
            torch.set_rng_state(extra["rng"]["torch"])


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
