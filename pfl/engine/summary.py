"""summary.json and the per-client tables of a finished run."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from omegaconf import DictConfig

from pfl.engine import names
from pfl.engine.files import atomic_write_text


def rounds_to_target(history: list[dict], key: str, target: float) -> int | None:
    """First evaluation round at which metric `key` reached `target` (None: never)."""
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


def _local_baseline(row: dict) -> dict | None:
    """Mean Acc_local and the fraction of held-out clients beating it after k epochs."""
    if names.local() not in row:
        return None
    prefix = names.beats_local("")
    return {"local_accuracy": row[names.local()],
            "beats_local_fraction": {k[len(prefix):]: v for k, v in row.items() if k.startswith(prefix)}}


def summarize(cfg: DictConfig, module, backend: str, device, wall_time: float) -> dict:
    epochs = list(module.report_epochs)  # the requested ones and those the algorithm reports at (FedAvg-FT's K)
    row = module.history[-1] if module.history else {}
    target = float(cfg.personalization.target_accuracy)
    held = _population_summary(row, "heldout", epochs)
    rounds = module.total_rounds
    stage_names = [s.name for s in module.stages]
    return {
        "algorithm": "+".join(stage_names),
        "dataset": cfg.dataset.name,
        "model": cfg.model._target_.rsplit(".", 1)[-1],
        "rounds": rounds,
        "stages": [{"name": s.name, "rounds": s.rounds} for s in module.stages],
        "round_unit": getattr(module.stages[0].algorithm, "round_unit", "round"),  # "epoch": centralized
        "clients_per_round": cfg.clients_per_round,
        "seed": cfg.seed,
        "zeta": cfg.zeta,
        "initial_accuracy": held.get("initial_accuracy"),
        "personalized_accuracy": held.get("personalized_accuracy", {}),
        "personalization_curve": held.get("curve"),
        "fraction_worse": held.get("fraction_worse"),
        "train_clients": _population_summary(row, "train", epochs),
        "target_accuracy": target,
        "rounds_to_target": {
            "initial": rounds_to_target(module.history, names.initial(), target),
            **{f"personalized_{k}": rounds_to_target(module.history, names.pers(k), target) for k in epochs},
        },
        "bytes": {
            "down_total": module.bytes_total["down"],
            "up_total": module.bytes_total["up"],
            "down_per_round": module.bytes_total["down"] / max(rounds, 1),
            "up_per_round": module.bytes_total["up"] / max(rounds, 1),
        },
        "flops_per_round": dict(module.flops),  # stage -> FLOPs of its first round (cohort total, FlopCounterMode)
        "flops_total_estimate": sum(module.flops.get(s.name, 0) * s.rounds for s in module.stages),
        "local_baseline": _local_baseline(row),
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
    for label, part in (("held-out", summary), ("training", summary.get("train_clients") or {})):
        if part.get("initial_accuracy") is None:
            continue
        vals = [part["initial_accuracy"], *part["personalized_accuracy"].values()]
        lines.append(f"{label:<10}" + "".join(f"{v:>10.4f}" for v in vals))
    return "\n".join(lines)
