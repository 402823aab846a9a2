"""Plots of one run, drawn from the files in its directory (PNG in <run_dir>/plots/).

- accuracy_vs_round.png: held-out (and training-client) initial and personalized
  accuracy at every evaluation, with dotted lines where a stage ends;
- loss_vs_round.png: the algorithm's training metrics at every logged round;
- personalization_curve.png: accuracy after k = 0..K local epochs at the end;
- clients_scatter.png: each held-out client's initial vs personalized accuracy
  (points above the diagonal gained from personalization).

Only the plain files are read (metrics.csv, summary.json, clients_heldout.csv),
so `python -m pfl.report.run_plots RUN_DIR` redraws the plots of any run.
Matplotlib's object API with the Agg canvas: no display, no global state.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path


def _figure(width=5.5, height=4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    return path


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def plot_accuracy_vs_round(rows: list[dict], summary: dict, path: Path) -> Path | None:
    from pfl.engine import names

    rows = [r for r in rows if any(not math.isnan(_num(r.get(names.initial(pop)))) for pop in ("heldout", "train"))]
    if not rows:
        return None
    fig, ax = _figure(6.4, 4.2)
    rounds = [_num(r["round"]) for r in rows]
    ks = list(summary.get("personalized_accuracy", {}))
    # one color per k; held-out solid with filled circles, training clients dashed with open squares
    for pop, style, marker, fill in (("heldout", "-", "o", None), ("train", "--", "s", "none")):
        label = "held-out" if pop == "heldout" else "training clients"
        series = [("initial", names.initial(pop))] + [(f"pers. {k} ep.", names.pers(k, pop)) for k in ks]
        for color, (name, key) in enumerate(series):
            ys = [_num(r.get(key)) for r in rows]
            if any(not math.isnan(y) for y in ys):
                ax.plot(rounds, ys, style, color=f"C{color}", marker=marker, markersize=4, markerfacecolor=fill,
                        linewidth=1.6, label=f"{label}: {name}")
    end = 0
    for st in summary.get("stages", [])[:-1]:
        end += st["rounds"]
        ax.axvline(end, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel(summary.get("round_unit", "round"))
    ax.set_ylabel("accuracy (mean over clients)")
    ax.set_title(f"{summary.get('algorithm', '')} on {summary.get('dataset', '')}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, handlelength=4, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return _save(fig, path)


def plot_loss_vs_round(rows: list[dict], summary: dict, path: Path) -> Path | None:
    """Every training metric of the algorithm (train/loss, AFML's train/l_enc, ...) against rounds."""
    keys = [k for k in (rows[0] if rows else {}) if k.startswith("train/")]
    if not keys:
        return None
    fig, ax = _figure(6.4, 3.6)
    for key in keys:
        pts = [(_num(r["round"]), _num(r.get(key))) for r in rows]
        pts = [p for p in pts if not math.isnan(p[1])]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], linewidth=1.2, label=key)
    ax.set_xlabel(summary.get("round_unit", "round"))
    ax.set_ylabel("training metric (cohort mean)")
    ax.set_title(f"training: {summary.get('algorithm', '')} on {summary.get('dataset', '')}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, handlelength=3)
    return _save(fig, path)


def plot_personalization_curve(summary: dict, path: Path) -> Path | None:
    held = summary.get("heldout_clients")  # older summaries: the top level was the held-out clients
    curves = [("held-out", (held or {}).get("curve") if held is not None else summary.get("personalization_curve")),
              ("training clients", (summary.get("train_clients") or {}).get("curve"))]
    curves = [(n, c) for n, c in curves if c]
    if not curves:
        return None
    fig, ax = _figure()
    for name, c in curves:
        ax.plot(range(len(c)), c, marker="o", label=name)
    ax.set_xlabel("local personalization epochs k")
    ax.set_ylabel("accuracy (mean over clients)")
    ax.set_title("personalization curve (k = 0: initial)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_client_scatter(clients: list[dict], summary: dict, path: Path, label: str = "held-out clients") -> Path | None:
    ks = [int(k) for k in summary.get("personalized_accuracy", {})]
    if not clients or not ks:
        return None
    k = max(ks)
    pts = [(_num(c.get("acc_0")), _num(c.get(f"acc_{k}"))) for c in clients]
    pts = [(a, b) for a, b in pts if not (math.isnan(a) or math.isnan(b))]
    if not pts:
        return None
    fig, ax = _figure(4.5, 4.5)
    ax.scatter([a for a, _ in pts], [b for _, b in pts], s=10, alpha=0.6)
    ax.plot([0, 1], [0, 1], color="black", linewidth=1)
    worse = sum(b < a for a, b in pts) / len(pts)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("initial accuracy")
    ax.set_ylabel(f"accuracy after {k} personalization epochs")
    ax.set_title(f"{label} ({len(pts)}); {worse:.0%} below the diagonal", fontsize=9)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _headline_clients(run_dir: Path, summary: dict):
    """(rows, label) of the per-client file of the summary's headline population."""
    if summary.get("population") == "train":
        return _read_csv(run_dir / "clients_train.csv"), "training clients"
    return _read_csv(run_dir / "clients_heldout.csv"), "held-out clients"


def write_run_plots(run_dir: str | Path) -> list[Path]:
    """Draw every plot the run's files allow; returns the PNG paths written."""
    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    out = run_dir / "plots"
    out.mkdir(exist_ok=True)
    rows = _read_csv(run_dir / "metrics.csv")
    rows_head, label_head = _headline_clients(run_dir, summary)
    made = [
        plot_accuracy_vs_round(rows, summary, out / "accuracy_vs_round.png"),
        plot_loss_vs_round(rows, summary, out / "loss_vs_round.png"),
        plot_personalization_curve(summary, out / "personalization_curve.png"),
        plot_client_scatter(rows_head, summary, out / "clients_scatter.png", label_head),
    ]
    return [p for p in made if p is not None]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m pfl.report.run_plots RUN_DIR")
    for p in write_run_plots(sys.argv[1]):
        print(p)
