"""Gather the runs of a directory: the trials of an Optuna sweep, or the jobs of a Hydra multirun.

- Optuna sweep (the directory has sweep.json, written by pfl.sweep): every
  trial of every study in the sweep's storage, with its state, parameters,
  objective values, intermediate values and failure reason.
- Hydra multirun (a grid): every job directory (with .hydra/overrides.yaml);
  the parameters are the overrides that differ between jobs, the objectives
  are read from each summary.json (default: initial and personalized accuracy).
Either way each row points to its run directory, whose metrics.csv gives the
convergence curves.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from pfl.sweep.objective import MissingObjective, lookup


@dataclass
class Row:
    study: str
    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING, WAITING, INCOMPLETE
    params: dict
    values: list  # one per objective (None when not produced)
    reason: str = ""
    run_dir: Path | None = None
    intermediate: dict = field(default_factory=dict)  # round -> reported value (pruning)


@dataclass
class Collection:
    title: str
    kind: str  # "optuna", "grid" (hyper-parameters), "seeds" (only the seed varies), "run" (a single run)
    objectives: list[str]
    directions: list[str]
    rows: list[Row]
    studies: list[str]
    log_params: set = field(default_factory=set)  # parameters searched on a log scale
    notes: list[str] = field(default_factory=list)
    storage: str | None = None  # an Optuna sweep's storage URL (pfl.report.optuna_views reads the studies)

    @property
    def param_names(self) -> list[str]:
        names: list[str] = []
        for r in self.rows:
            names += [k for k in r.params if k not in names]
        return names


def collect(directory: str | Path, objectives: list[str] | None = None) -> Collection:
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"{d} is not a directory")
    if (d / "sweep.json").is_file():
        return collect_sweep(d)
    if (d / "summary.json").is_file() or ((d / "metrics.csv").is_file() and not any(d.glob("*/.hydra"))):
        return collect_run(d, objectives)
    return collect_multirun(d, objectives)


def collect_run(d: Path, objectives: list[str] | None) -> Collection:
    """One run directory: its summary's numbers as the one row."""
    summary = _read_json(d / "summary.json")
    objectives = objectives or _default_objectives({d: summary})
    values = []
    for path in objectives:
        try:
            values.append(lookup(summary, path) if summary else None)
        except MissingObjective:
            values.append(None)
    title = f"{summary.get('algorithm', '?')} on {summary.get('dataset', '?')}" if summary else d.name
    row = Row(study=d.name, number=0, state="COMPLETE" if summary else "INCOMPLETE", params={}, values=values,
              reason="" if summary else "no summary.json (failed or still running)", run_dir=d)
    return Collection(title, "run", list(objectives), ["maximize"] * len(objectives), [row], [d.name],
                      notes=[f"run directory: {d}"])


def collect_sweep(d: Path) -> Collection:
    import optuna

    meta = json.loads((d / "sweep.json").read_text())
    url = meta["storage"]
    local = d / "optuna.db"
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file() and local.is_file():
        url = f"sqlite:///{local.resolve()}"  # the directory was moved or copied
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url)
    rows, log_params, names = [], set(), []
    known = {s.study_name for s in storage.get_all_studies()}
    for name in meta["studies"]:
        if name not in known:
            continue
        names.append(name)
        study = optuna.load_study(study_name=name, storage=storage)
        for t in study.get_trials(deepcopy=False):
            log_params |= {k for k, dist in t.distributions.items() if getattr(dist, "log", False)}
            run_dir = t.user_attrs.get("run_dir")
            rows.append(Row(
                study=name, number=t.number, state=t.state.name, params=dict(t.params),
                values=list(t.values) if t.values is not None else [None] * len(meta["objectives"]),
                reason=t.user_attrs.get("fail_reason", ""), run_dir=_local_run_dir(d, run_dir),
                intermediate={int(k): v for k, v in t.intermediate_values.items()},
            ))
    notes = [f"storage: {meta['storage']}", f"budget: {meta.get('n_trials')} trials per study"]
    return Collection(meta["name"], "optuna", list(meta["objectives"]), list(meta["directions"]), rows, names,
                      log_params, notes, storage=url)


def _local_run_dir(sweep_dir: Path, recorded: str | None) -> Path | None:
    if not recorded:
        return None
    p = Path(recorded)
    if p.is_dir():
        return p
    # moved or copied sweep directory: keep the part below the sweep directory's name
    parts = p.parts
    if sweep_dir.name in parts:
        candidate = sweep_dir.joinpath(*parts[len(parts) - parts[::-1].index(sweep_dir.name):])
        if candidate.is_dir():
            return candidate
    return p


def collect_multirun(d: Path, objectives: list[str] | None) -> Collection:
    jobs = sorted((p.parent.parent for p in d.glob("**/.hydra/overrides.yaml")), key=_job_order)
    if not jobs:
        raise FileNotFoundError(f"{d} holds neither sweep.json (an Optuna sweep) nor Hydra job directories")
    overrides = {j: _overrides(j) for j in jobs}
    keys: list[str] = []
    for o in overrides.values():
        keys += [k for k in o if k not in keys]
    varying = [k for k in keys if len({overrides[j].get(k) for j in jobs}) > 1]
    summaries = {j: _read_json(j / "summary.json") for j in jobs}
    if objectives is None:
        objectives = _default_objectives(summaries)
    rows = []
    for i, j in enumerate(jobs):
        summary = summaries[j]
        values, reason = [], ""
        for path in objectives:
            try:
                values.append(lookup(summary, path) if summary else None)
            except MissingObjective as exc:
                values.append(None)
                reason = str(exc)
        state = "COMPLETE" if summary else "INCOMPLETE"
        rows.append(Row(study=d.name, number=i, state=state,
                        params={k: _number(overrides[j].get(k)) for k in varying}, values=values,
                        reason=reason if summary else "no summary.json (failed or still running)", run_dir=j))
    fixed = [f"{k}={overrides[jobs[0]][k]}" for k in keys if k not in varying and k in overrides[jobs[0]]]
    notes = ["fixed overrides: " + (" ".join(fixed) or "none")]
    kind = "seeds" if varying and all(k == "seed" for k in varying) else "grid"
    return Collection(str(d), kind, list(objectives), ["maximize"] * len(objectives), rows, [d.name],
                      notes=notes)


def _job_order(p: Path):
    return [int(x) if x.isdigit() else x for x in p.relative_to(p.anchor).parts]


def _overrides(job: Path) -> dict:
    out = {}
    for o in OmegaConf.to_container(OmegaConf.load(job / ".hydra" / "overrides.yaml")) or []:
        key, _, value = str(o).partition("=")
        out[key.lstrip("+~")] = value
    return out


def _default_objectives(summaries: dict) -> list[str]:
    from pfl.engine import names

    for s in summaries.values():
        if s and s.get("final"):  # the metric names of metrics.csv and the loggers
            ks = names.pers_epochs(s["final"])
            return [names.initial()] + ([names.pers(ks[-1])] if ks else [])
        if s and s.get("personalized_accuracy"):  # a run written before summary.json had `final`
            k = max(s["personalized_accuracy"], key=lambda x: int(x))
            return ["initial_accuracy", f"personalized_accuracy.{k}"]
    return [names.initial()]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _number(v):
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return int(f) if f.is_integer() and "." not in str(v) and "e" not in str(v).lower() else f


def read_metrics(run_dir: Path | None) -> list[dict]:
    """The rows of a run's metrics.csv as numbers (empty when absent)."""
    if run_dir is None or not (Path(run_dir) / "metrics.csv").is_file():
        return []
    out = []
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        for r in csv.DictReader(f):
            row = {}
            for k, v in r.items():
                try:
                    row[k] = float(v)
                except (TypeError, ValueError):
                    continue
            if "round" in row:
                out.append(row)
    return out
