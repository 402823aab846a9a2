"""A finished sweep's best trials: `optimization_results.yaml` and the `best` entry of sweep.json.

optimization_results.yaml has hydra-optuna-sweeper's layout, so tools written for it read pfl's:

    name: optuna                    # single objective
    best_params: {client_opt.lr: 0.0591, algorithm.local_epochs: 11}
    best_value: 0.84

    name: optuna                    # several objectives: the Pareto front
    solutions:
    - {params: {...}, values: [0.84, 0.80]}

A sweep with a grid (one study per grid point) adds `studies`: the same per study name.
sweep.json gets `best`: per study, the best trial's number, params, value(s) and run directory
(the Pareto front's trials for several objectives).
"""

from __future__ import annotations

import json
from pathlib import Path

from pfl.engine.files import write_json

RUN_DIR = "run_dir"  # the trial's user attribute set by pfl.sweep.driver.record


def best_trials(study) -> list:
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    return [study.best_trial] if len(study.directions) == 1 else list(study.best_trials)


def plugin_layout(study) -> dict:
    """hydra-optuna-sweeper's results of one study (empty when no trial completed)."""
    best = best_trials(study)
    if not best:
        return {}
    if len(study.directions) == 1:
        return {"best_params": dict(best[0].params), "best_value": best[0].value}
    return {"solutions": [{"params": dict(t.params), "values": list(t.values)} for t in best]}


def entry(trial) -> dict:
    return {"number": trial.number, "params": dict(trial.params), "values": list(trial.values),
            "run_dir": trial.user_attrs.get(RUN_DIR)}


def write(sweep_dir: Path, studies: list) -> None:
    """Write optimization_results.yaml and add `best` to sweep.json (a sweep with no complete trial: neither)."""
    from omegaconf import OmegaConf

    per_study = {s.study_name: plugin_layout(s) for s in studies}
    if not any(per_study.values()):
        return
    out = {"name": "optuna", **(per_study[studies[0].study_name] if len(studies) == 1 else {})}
    if len(studies) > 1:
        out["studies"] = per_study
    tmp = sweep_dir / ".optimization_results.yaml.tmp"
    OmegaConf.save(OmegaConf.create(out), tmp)
    tmp.replace(sweep_dir / "optimization_results.yaml")
    meta_path = sweep_dir / "sweep.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    meta["best"] = {s.study_name: [entry(t) for t in best_trials(s)] for s in studies}
    write_json(meta_path, meta)
