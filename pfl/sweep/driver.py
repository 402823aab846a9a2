"""The sweep loop run by the Hydra plugin: claim trials, launch jobs, record outcomes.

For every study (one, or one per combination of `sweep.grid`):

    while the budget is not spent:
        claim up to n_jobs trials, sample their parameters
        launch one Hydra job per trial (overrides: parameters + sweep.study/storage/trial)
        record each outcome: COMPLETE with the objective values the job returned,
        PRUNED when it raised optuna.TrialPruned, FAIL with the reason otherwise

A trial's run directory is <hydra.sweep.dir>/[<grid point>/]trial_<number>;
its outcome is also written there as trial.json. The whole sweep is described
in <hydra.sweep.dir>/sweep.json, which `python -m pfl.report` reads.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
import traceback
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from pfl.config.errors import ConfigError
from pfl.engine.faults import Stopped
from pfl.engine.files import write_json
from pfl.sweep import results
from pfl.sweep.log_lines import short_job_lines, short_params, short_value
from pfl.sweep import space as sp
from pfl.config.sweep import SweepSettings
from pfl.sweep.study import REASON, Heartbeat, claim, default_storage, fail_stale, make_storage, open_study, requeue

log = logging.getLogger("pfl.sweep")


def quote(s: str) -> str:
    return "'" + str(s).replace("\\", "\\\\").replace("'", "\\'") + "'"


def grid_points(grid: dict) -> list[dict]:
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def point_label(point: dict) -> str:
    return ",".join(f"{sp.param_name(k)}={v}" for k, v in point.items())


def search_space(settings: SweepSettings, arguments: list[str], hydra_params: dict | None = None) -> tuple[dict, list[str]]:
    """The search space and the fixed overrides, from (later wins, key by key):
    hydra.sweeper.params (an experiment's grid), sweep.params, the command line."""
    space, fixed = {}, []
    for entries in (sp.split(hydra_params or {}), sp.split(settings.params), sp.parse_arguments(arguments)):
        keys = {sp.param_name(k) for k in entries[0]} | {sp.param_name(a.partition("=")[0]) for a in entries[1]}
        space = {k: v for k, v in space.items() if sp.param_name(k) not in keys}
        fixed = [f for f in fixed if sp.param_name(f.partition("=")[0]) not in keys]
        space.update(entries[0])
        fixed += entries[1]
    return space, fixed


ALIASES = {"study_name": "name", "direction": "directions"}  # hydra-optuna-sweeper's key -> the `sweep` key


def merged_settings(cfg, sweeper_settings: dict | None) -> SweepSettings:
    """The `sweep` node, with every hydra.sweeper key that is set winning over it (hydra-optuna-sweeper's
    names: study_name, direction, sampler, storage, n_trials, n_jobs; pfl's extras: objectives, grid, pruner,
    report). Without a `sweep` node (a YAML written for hydra-optuna-sweeper) the study is named `sweep`
    and maximizes held-out accuracy after the most personalization epochs (heldout/pers_acc_<max k>)."""
    from pfl.engine import names

    node = cfg.get("sweep")
    data = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    for key, value in (sweeper_settings or {}).items():
        if key == "custom_search_space":
            continue
        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True)
        if key == "sampler":
            value = dict(value or {})
            if "_target_" not in value and all(v is None for v in value.values()):
                continue  # the default option: sweep.sampler, else TPE seeded by `seed`
            value = {"_target_": "optuna.samplers.TPESampler", **value}  # hydra-optuna-sweeper's default
        if value is not None:
            data[ALIASES.get(key, key)] = value
    data.setdefault("name", "sweep")
    if not data.get("objectives") and cfg.get("optimized_metric"):  # lightning-hydra-template's key
        metric = cfg.optimized_metric
        data["objectives"] = [str(metric)] if isinstance(metric, str) else [str(m) for m in metric]
    if not data.get("objectives"):
        data["objectives"] = [names.pers(max(cfg.personalization.epochs))]
    return SweepSettings.from_cfg(data)


def job_overrides(settings: SweepSettings) -> list[str]:
    """What a trial's job needs to know of the sweep (objectives, pruning), as overrides."""
    node = {"name": settings.name, "objectives": settings.objectives, "directions": settings.directions}
    if settings.pruner:
        node.update(pruner=settings.pruner, report=settings.report)
    return [f"++sweep={_value(node)}"]  # one override: it also creates the node where the config has none


def _value(v) -> str:
    """A value in Hydra's override syntax (lists and dicts too)."""
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_value(x) for x in v) + "]"
    return sp.format_value(v)


def run_sweep(sweeper, arguments: list[str]) -> list[dict]:
    import hydra.utils
    import optuna

    cfg = sweeper.config
    settings = merged_settings(cfg, getattr(sweeper, "settings", None))
    space, fixed = search_space(settings, arguments, getattr(sweeper, "params", None))
    grid_keys = {sp.param_name(k) for k in settings.grid}
    clash = grid_keys & {sp.param_name(k) for k in space}
    if clash:
        raise ConfigError("sweep.grid", sorted(clash), "keys that are not also searched in sweep.params")
    if not space:
        raise ConfigError("sweep.params", {}, "at least one searched key, e.g. client_opt.lr: interval(0.001, 0.1)")
    sweep_dir = Path(str(cfg.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, sweep_dir / "multirun.yaml")
    url = settings.storage or default_storage(sweep_dir)
    storage = make_storage(url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    points = grid_points(settings.grid)
    studies = [settings.name if not p else f"{settings.name}[{point_label(p)}]" for p in points]
    write_json(sweep_dir / "sweep.json", {
        "name": settings.name, "storage": url, "studies": studies, "objectives": settings.objectives,
        "directions": settings.directions, "params": {k: repr(v) for k, v in space.items()},
        "grid": settings.grid, "n_trials": settings.n_trials,
    })
    outcomes = []
    for point, study_name in zip(points, studies):
        pruner = hydra.utils.instantiate(settings.pruner) if settings.pruner else optuna.pruners.NopPruner()
        study = open_study(study_name, storage, settings.directions, make_sampler(settings, cfg.get("seed", 0)), pruner)
        study.set_user_attr("objectives", settings.objectives)
        if len(set(settings.objectives)) == len(settings.objectives):
            import warnings

            with warnings.catch_warnings():  # "experimental" since Optuna 3.2
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(list(settings.objectives))  # optuna-dashboard shows them, not "Objective 0"
        study.set_user_attr("grid_point", point)
        fail_stale(study, storage, settings.stale_after_s)
        subdir = (point_label(point) + "/") if point else ""
        point_overrides = [f"{k}={sp.format_value(v)}" for k, v in point.items()]
        log.info("study %s: %d trials in %s; space %s", study_name, settings.n_trials, url,
                 ", ".join(f"{k}: {v}" for k, v in space.items()))
        with short_job_lines(sp.param_name(k) for k in space):
            outcomes += _run_study(sweeper, study, storage, settings, space,
                                   fixed + point_overrides + job_overrides(settings), url, subdir)
        _log_best(study)
    results.write(sweep_dir, [optuna.load_study(study_name=n, storage=storage) for n in studies])
    return outcomes


def make_sampler(settings: SweepSettings, seed: int, offset: int = 0):
    """The configured sampler (default: TPE seeded by the run seed), its seed shifted by `offset`."""
    import hydra.utils
    import optuna

    if settings.sampler is None:
        return optuna.samplers.TPESampler(seed=seed + offset)
    node = dict(settings.sampler)
    if node.get("seed") is not None:
        node["seed"] = int(node["seed"]) + offset
    return hydra.utils.instantiate(node)


def _run_study(sweeper, study, storage, settings, space, fixed, url, subdir) -> list[dict]:
    outcomes, fatal, first = [], None, None
    while fatal is None:
        batch = []
        fail_stale(study, storage, settings.stale_after_s)  # a worker that died meanwhile: its trial runs again here
        for _ in range(settings.n_jobs):
            trial = claim(study, storage, settings.n_trials)
            if trial is None:
                break
            if first is None:
                # seeded samplers of concurrent workers would propose the same points: shift the seed by
                # this worker's first trial number (0 for a lone worker on a new study: reproducible)
                first = trial.number
                study.sampler = make_sampler(settings, sweeper.config.get("seed", 0), offset=first)
            batch.append(trial)
        if not batch:
            break
        jobs = []
        custom = _custom_search_space(getattr(sweeper, "settings", {}) or {})
        for t in batch:
            params = sp.suggest(t, space)
            if custom is not None:  # hydra-optuna-sweeper's define-by-run hook: fn(cfg, trial) suggests more
                known = set(t.params)
                custom(sweeper.config, t)
                params += [f"{k}={sp.format_value(v)}" for k, v in t.params.items() if k not in known]
            jobs.append(fixed + params + [
                f"++sweep.study={quote(study.study_name)}", f"++sweep.storage={quote(url)}",
                f"++sweep.trial={t.number}", f"hydra.sweep.subdir={quote(f'{subdir}trial_{t.number}')}",
            ])
        t0 = time.perf_counter()
        try:
            sweeper.validate_batch_is_legal(jobs)
            with Heartbeat(storage, [t._trial_id for t in batch], settings.heartbeat_s):
                returns = sweeper.launcher.launch(jobs, initial_job_idx=batch[0].number)
        except BaseException as exc:  # a job that cannot even be composed, or Ctrl-C: stop the sweep
            for t in batch:
                if isinstance(exc, (KeyboardInterrupt, SystemExit, Stopped)):  # Ctrl-C (Lightning exits): run it again on resume
                    requeue(study, storage, t, "interrupted (Ctrl-C or SIGTERM)")
                else:
                    _tell_fail(study, storage, t, f"{type(exc).__name__}: {_first_line(exc)}")
            raise
        wall = time.perf_counter() - t0
        for t, ret in zip(batch, returns):
            outcome = record(study, storage, t, ret, settings, wall)
            outcomes.append(outcome)
            if outcome.get("fatal"):
                fatal = outcome["reason"]
    if fatal:
        raise ConfigError("sweep.objectives", settings.objectives, f"metrics every run produces ({fatal})")
    return outcomes


def _custom_search_space(settings: dict):
    path = settings.get("custom_search_space")
    if not path:
        return None
    from hydra.utils import get_method

    return get_method(str(path))


def _first_line(exc: BaseException) -> str:
    return next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)


def _tell_fail(study, storage, trial, reason: str) -> None:
    from optuna.trial import TrialState

    try:
        storage.set_trial_user_attr(trial._trial_id, REASON, reason)
        study.tell(trial, state=TrialState.FAIL)
    except Exception:  # noqa: BLE001 - already finished
        pass


def record(study, storage, trial, ret, settings: SweepSettings, wall: float) -> dict:
    """Tell Optuna how the trial's job ended; write trial.json into its run directory."""
    import optuna
    from hydra.core.utils import JobStatus
    from optuna.trial import TrialState

    from pfl.sweep.objective import MissingObjective

    run_dir = None
    if ret.hydra_cfg is not None:
        run_dir = str(ret.hydra_cfg.hydra.runtime.output_dir)
        storage.set_trial_user_attr(trial._trial_id, "run_dir", run_dir)
    outcome = {"study": study.study_name, "number": trial.number, "params": dict(trial.params), "run_dir": run_dir}
    if ret.status == JobStatus.COMPLETED:
        value, exc = ret.return_value, None
    else:  # the job's exception (JobReturn.return_value would re-raise it and print a misleading error line)
        value, exc = None, ret._return_value
        if not isinstance(exc, BaseException):
            exc = RuntimeError(f"job status {ret.status.name}: {exc!r}")
    if exc is None:
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if value is None or len(values) != len(settings.objectives):
            exc = RuntimeError(f"the job returned {value!r}, not {len(settings.objectives)} objective value(s)")
        elif not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            exc = FloatingPointError(f"non-finite objective {values}")
        else:
            study.tell(trial, values)
            outcome.update(state="COMPLETE", values=values)
    if exc is not None and isinstance(exc, optuna.TrialPruned):
        study.tell(trial, state=TrialState.PRUNED)
        outcome.update(state="PRUNED", reason=_first_line(exc))
    elif exc is not None:
        reason = f"{type(exc).__name__}: {_first_line(exc)}"
        _tell_fail(study, storage, trial, reason)
        outcome.update(state="FAIL", reason=reason, fatal=isinstance(exc, MissingObjective),
                       traceback="".join(traceback.format_exception(exc))[-4000:])
    frozen = storage.get_trial(trial._trial_id)
    outcome["intermediate"] = {int(k): v for k, v in frozen.intermediate_values.items()}
    shown = short_params(outcome["params"])
    tail = (" ".join(short_value(v) for v in outcome["values"]) if "values" in outcome
            else outcome.get("reason", ""))
    (log.info if outcome["state"] != "FAIL" else log.warning)(
        "#%d %s %s: %s", trial.number, outcome["state"].lower(), shown, tail)
    if run_dir and Path(run_dir).is_dir():
        write_json(Path(run_dir) / "trial.json", {**{k: v for k, v in outcome.items() if k != "fatal"}, "batch_wall_s": wall})
    return outcome


def _log_best(study) -> None:
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    states = {}
    for t in study.get_trials(deepcopy=False):
        states[t.state.name] = states.get(t.state.name, 0) + 1
    log.info("study %s: %s", study.study_name, ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())))
    if not done:
        return
    if len(study.directions) == 1:
        b = study.best_trial
        log.info("best trial %d: value %.4f, params %s", b.number, b.value, json.dumps(b.params))
    else:
        for b in study.best_trials:
            log.info("Pareto front: trial %d values %s params %s", b.number, b.values, json.dumps(b.params))
