"""The report's figures as PNG bytes (matplotlib's Agg canvas; no display, no global backend)."""

from __future__ import annotations

import io
import math

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pfl.engine import names
from pfl.report.collect import Collection, Row, read_metrics
from pfl.report.pareto import pareto_front

STATE_STYLE = {"COMPLETE": ("o", None), "PRUNED": ("x", "0.55"), "FAIL": ("v", "tab:red"),
               "INCOMPLETE": ("v", "tab:red")}
MAX_PARAMS = 8


def png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def _colors(coll: Collection) -> dict[str, str]:
    cycle = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]
    return {s: cycle[i % len(cycle)] for i, s in enumerate(coll.studies)}


def _axis_values(values: list) -> tuple[list, list[str] | None]:
    """Numbers as they are; anything else as category positions with labels."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None):
        return values, None
    labels = sorted({str(v) for v in values}, key=str)
    return [labels.index(str(v)) for v in values], labels


def _short(path: str) -> str:
    return path.replace("personalized_accuracy", "pers").replace("initial_accuracy", "initial").replace("heldout/", "")


def objective_vs_params(coll: Collection) -> bytes | None:
    params = coll.param_names[:MAX_PARAMS]
    if not params:
        return None
    n_obj = min(len(coll.objectives), 3)
    fig = Figure(figsize=(3.2 * len(params), 2.8 * n_obj))
    colors = _colors(coll)
    for oi in range(n_obj):
        for pi, name in enumerate(params):
            ax = fig.add_subplot(n_obj, len(params), oi * len(params) + pi + 1)
            rows = [r for r in coll.rows if name in r.params]
            xs, labels = _axis_values([r.params[name] for r in rows])
            for r, x in zip(rows, xs):
                y = _plotted_value(r, oi, n_obj)
                if y is None:
                    continue
                marker, color = STATE_STYLE.get(r.state, ("o", None))
                ax.scatter([x], [y], marker=marker, color=color or colors.get(r.study, "tab:blue"), s=28,
                           alpha=0.85)
            if labels is not None:
                ax.set_xticks(range(len(labels)))
                ax.set_xticklabels(labels, rotation=30, fontsize=8)
            elif name in coll.log_params or _looks_log([r.params[name] for r in rows]):
                ax.set_xscale("log")
            elif all(isinstance(r.params[name], int) for r in rows):
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel(name, fontsize=9)
            if pi == 0:
                ax.set_ylabel(_short(coll.objectives[oi]), fontsize=9)
            ax.grid(alpha=0.3)
    fig.suptitle("objective against each parameter (o complete, x pruned: last reported value)", fontsize=10)
    return png(fig)


def _plotted_value(r: Row, oi: int, n_obj: int):
    if r.values and oi < len(r.values) and r.values[oi] is not None and math.isfinite(r.values[oi]):
        if r.state == "COMPLETE" or r.state == "PRUNED":
            return r.values[oi]
    if r.state == "PRUNED" and r.intermediate and n_obj == 1:
        return r.intermediate[max(r.intermediate)]
    return None


def _looks_log(values: list) -> bool:
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return len(nums) >= 2 and min(nums) > 0 and max(nums) / min(nums) >= 100


def pareto(coll: Collection) -> tuple[bytes | None, dict[str, list[Row]]]:
    """Scatter of the first two objectives with each study's Pareto front; also the fronts."""
    if len(coll.objectives) < 2:
        return None, {}
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    colors = _colors(coll)
    fronts = {}
    for study in coll.studies:
        rows = [r for r in coll.rows if r.study == study and r.state == "COMPLETE" and
                all(v is not None for v in r.values[:2])]
        if not rows:
            continue
        pts = [r.values[:2] for r in rows]
        front = sorted((rows[i] for i in pareto_front(pts, coll.directions[:2])), key=lambda r: r.values[0])
        fronts[study] = front
        c = colors[study]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=c, alpha=0.35, s=22,
                   label=f"{study}: trials" if len(coll.studies) > 1 else "trials")
        ax.plot([r.values[0] for r in front], [r.values[1] for r in front], "-o", color=c, ms=6,
                label=f"{study}: Pareto front" if len(coll.studies) > 1 else "Pareto front")
        for r in front:
            ax.annotate(str(r.number), (r.values[0], r.values[1]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if not fronts:
        return None, {}
    ax.set_xlabel(f"{coll.objectives[0]} ({coll.directions[0]})")
    ax.set_ylabel(f"{coll.objectives[1]} ({coll.directions[1]})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("trade-off and Pareto front (numbers: trials)", fontsize=10)
    return png(fig), fronts


def convergence(coll: Collection, max_runs: int = 60) -> bytes | None:
    """Initial and personalized held-out accuracy against rounds, one line per run."""
    curves = [(r, read_metrics(r.run_dir)) for r in coll.rows[:max_runs]]
    curves = [(r, m) for r, m in curves if m]
    if not curves:
        return None
    keys = {k for _, m in curves for row in m for k in row}
    pers = names.pers_epochs(keys)
    panels = [k for k in [names.initial(), names.pers(pers[-1]) if pers else None] if k in keys]
    if not panels:
        return None
    fig = Figure(figsize=(5.2 * len(panels), 3.8))
    colors = _colors(coll)
    for i, key in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for r, rows in curves:
            pts = [(m["round"], m[key]) for m in rows if key in m]
            if not pts:
                continue
            style = {"COMPLETE": "-", "PRUNED": "--"}.get(r.state, ":")  # legend handles long enough to tell
            label = f"{r.study}#{r.number}" if len(coll.studies) > 1 else f"#{r.number}"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker=".", ms=4, alpha=0.8,
                    color=None if len(coll.studies) == 1 else colors[r.study], label=label)
        ax.set_xlabel("round")
        ax.set_ylabel(key.replace("heldout/", "held-out "))
        ax.grid(alpha=0.3)
        if len(curves) <= 12 and i == len(panels) - 1:
            ax.legend(fontsize=7, ncol=2, handlelength=3.5)
    fig.suptitle("convergence (solid complete, dashed pruned, dotted failed)", fontsize=10)
    return png(fig)


def history(coll: Collection) -> bytes | None:
    """Single-objective sweeps: each trial's value and the best so far, by trial number."""
    if coll.kind != "optuna" or len(coll.objectives) != 1:
        return None
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot(1, 1, 1)
    colors = _colors(coll)
    sign = 1 if coll.directions[0] == "maximize" else -1
    drawn = False
    for study in coll.studies:
        rows = sorted((r for r in coll.rows if r.study == study and r.state == "COMPLETE"), key=lambda r: r.number)
        if not rows:
            continue
        drawn = True
        xs, ys = [r.number for r in rows], [r.values[0] for r in rows]
        best, b = [], None
        for y in ys:
            b = y if b is None or sign * y > sign * b else b
            best.append(b)
        ax.scatter(xs, ys, color=colors[study], s=18, alpha=0.6)
        ax.step(xs, best, where="post", color=colors[study], label=f"{study}: best so far")
    if not drawn:
        return None
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trial numbers, no fractional ticks
    ax.set_ylabel(coll.objectives[0])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png(fig)


def seed_bands(coll: Collection) -> bytes | None:
    """Seed grids: held-out accuracy per round, the mean over seeds with a ±1 std band."""
    import statistics

    curves = [read_metrics(r.run_dir) for r in coll.rows]
    curves = [m for m in curves if m]
    if not curves:
        return None
    keys = {k for m in curves for row in m for k in row}
    pers = names.pers_epochs(keys)
    panels = [k for k in [names.initial(), names.pers(pers[-1]) if pers else None] if k in keys]
    if not panels:
        return None
    fig = Figure(figsize=(5.2 * len(panels), 3.8))
    for i, key in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        by_round: dict[float, list[float]] = {}
        for m in curves:
            for row in m:
                if key in row:
                    by_round.setdefault(row["round"], []).append(row[key])
        rounds = sorted(by_round)
        mean = [statistics.fmean(by_round[r]) for r in rounds]
        std = [statistics.stdev(by_round[r]) if len(by_round[r]) > 1 else 0.0 for r in rounds]
        ax.plot(rounds, mean, "-o", ms=3, color="tab:blue", label=f"mean of {len(curves)} seeds")
        ax.fill_between(rounds, [a - b for a, b in zip(mean, std)], [a + b for a, b in zip(mean, std)],
                        color="tab:blue", alpha=0.25, label="± 1 std")
        ax.set_xlabel("round")
        ax.set_ylabel(key.replace("heldout/", "held-out "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, handlelength=3)
    fig.suptitle("held-out accuracy over seeds (mean ± std)", fontsize=10)
    return png(fig)
