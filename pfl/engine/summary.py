"""summary.json and the per-client tables of a finished run."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from pfl.engine import names
from pfl.engine.experiment import RunInfo
from pfl.engine.files import atomic_write_text
from pfl.engine.targets import own_targets, rounds_to_targets


def headline_metrics(summary: dict, prefix: str) -> dict[str, float]:
    """summary.json's headline numbers as `<prefix>/initial_acc` and `<prefix>/pers_acc_<k>` (loggers' final metrics)."""
    out = {}
    if isinstance(summary.get("initial_accuracy"), (int, float)):
        out[f"{prefix}/initial_acc"] = float(summary["initial_accuracy"])
    for k, v in (summary.get("personalized_accuracy") or {}).items():
        if isinstance(v, (int, float)):
            out[f"{prefix}/pers_acc_{k}"] = float(v)
    return out


def rounds_to_target(history: list[dict], key: str, target: float) -> int | None:
    """First row's round at which metric `key` reached `target` (None: never); rows in round order."""
    for row in history:
        v = row.get(key)
        if isinstance(v, (int, float)) and not math.isnan(v) and v >= target:
            return int(row["round"])
    return None


def _population_summary(row: dict, pop: str, epochs: list[int]) -> dict:
    if names.initial(pop) not in row:
        return {}
    return {
        "initial_accuracy": row[names.initial(pop)],
        "personalized_accuracy": {str(k): row[names.pers(k, pop)] for k in epochs},
        "curve": row.get(names.curve(pop)),
        "fraction_worse": row.get(names.worse(max(epochs), pop)),
    }


def _local_baseline(row: dict, pop: str) -> dict | None:
    """Mean Acc_local and the fraction of the population's clients beating it after k epochs."""
    if names.local(pop) not in row:
        return None
    prefix = names.beats_local("", pop)
    return {"population": pop, "local_accuracy": row[names.local(pop)],
            "beats_local_fraction": {k[len(prefix):]: v for k, v in row.items() if k.startswith(prefix)}}


def summarize(run: RunInfo, module, backend: str, device, wall_time: float) -> dict:
    epochs = list(module.report_epochs)  # the requested ones and those the algorithm reports at (local-only: its epochs)
    row = module.history[-1] if module.history else {}
    p = module.personalization
    target = float(p.target_accuracy)
    head = p.headline  # the population of the top-level numbers (personalization.population)
    top = _population_summary(row, head, epochs)
    rtt, resolution = rounds_to_targets(module, target)
    rounds = module.total_rounds
    return {
        "algorithm": run.algorithm,  # the configured names: FedAvg-FT's two stages are one method, fedavg_ft
        "dataset": run.dataset,
        "model": run.model,
        "rounds": rounds,
        "stages": [{"name": s.name, "rounds": s.rounds} for s in module.stages],
        "round_unit": getattr(module.stages[0].algorithm, "round_unit", "round"),  # "epoch": centralized
        "clients_per_round": run.clients_per_round,
        "seed": run.seed,
        "zeta": run.zeta,
        "population": head,  # "heldout" or "train": whose numbers the top-level accuracies are
        "initial_accuracy": top.get("initial_accuracy"),
        "personalized_accuracy": top.get("personalized_accuracy", {}),
        "personalization_curve": top.get("curve"),
        "fraction_worse": top.get("fraction_worse"),
        "train_clients": _population_summary(row, "train", epochs),  # each population's own block
        "heldout_clients": _population_summary(row, "heldout", epochs),
        "target_accuracy": target,
        "rounds_to_target": rtt,  # "initial", "<k>" (and the older "personalized_<k>"); pfl.engine.targets
        "rounds_to_target_resolution": resolution,
        "own_target": own_targets(module, float(p.own_target_fraction)),  # Fig. 4a: cost to the run's own final
        "bytes": {
            "down_total": module.bytes_total["down"],
            "up_total": module.bytes_total["up"],
            "down_per_round": module.bytes_total["down"] / max(rounds, 1),
            "up_per_round": module.bytes_total["up"] / max(rounds, 1),
        },
        "flops_per_round": dict(module.flops),  # stage -> FLOPs of its first round (cohort total, FlopCounterMode)
        "flops_total_estimate": (sum(module.flops.get(s.name, 0) * s.rounds for s in module.stages)
                                 if module.count_flops else None),  # None: engine.count_flops=false
        "local_baseline": _local_baseline(row, head),
        "evaluation_s": sum(r.get(names.EVAL_S, 0.0) for r in module.history),
        "tracking_s": sum(r.get(names.TRACK_S, 0.0) for r in module.track_history),
        "backend": backend,
        "device": str(device),
        "wall_time_s": wall_time,
        # the last evaluation row under the names of metrics.csv and the loggers (pfl.engine.names);
        # sweep objectives and the report may name these (`heldout/pers_acc_5`)
        "final": {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != names.ROUND},
    }


def write_client_records(run_dir: Path, results: dict) -> None:
    """clients_heldout.csv / clients_train.csv: one row per evaluated client."""
    for pop, res in results.items():
        rows = res.records()
        if not rows:
            continue
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(Path(run_dir) / f"clients_{pop}.csv", buf.getvalue())


def format_table(summary: dict) -> str:
    """A short text table of initial vs personalized accuracy."""
    lines = [f"{summary['algorithm']} on {summary['dataset']}, {summary['rounds']} rounds "
             f"({summary['wall_time_s']:.1f} s, backend {summary['backend']})"]
    lines.append(f"{'clients':<10}{'initial':>10}" + "".join(f"{'pers.' + k:>10}" for k in summary["personalized_accuracy"]))
    for label, part in (("held-out", summary.get("heldout_clients") or {}),
                        ("training", summary.get("train_clients") or {})):
        if part.get("initial_accuracy") is None:
            continue
        vals = [part["initial_accuracy"], *part["personalized_accuracy"].values()]
        lines.append(f"{label:<10}" + "".join(f"{v:>10.4f}" for v in vals))
        spread = _replica_std(summary, label, part)
        if spread:
            lines.append(f"{'  ± std':<10}" + "".join(f"{v:>10.4f}" if v is not None else f"{'':>10}" for v in spread)
                         + f"   (sample std over {len(summary['replicas'])} replicas)")
    return "\n".join(lines)


def _replica_std(summary: dict, label: str, part: dict) -> list | None:
    """The replicas' sample std of a table row's accuracies (pfl.engine.replicas.combine_summaries), or None."""
    std = summary.get("std")
    if not std or not summary.get("replicas"):
        return None
    if label == "training":
        base = "train_clients."
    elif part.get("initial_accuracy") == summary.get("initial_accuracy"):  # held-out is the headline population
        base = ""
    else:
        return None
    keys = [f"{base}initial_accuracy", *(f"{base}personalized_accuracy.{k}" for k in part["personalized_accuracy"])]
    return [std.get(k) for k in keys] if any(k in std for k in keys) else None
