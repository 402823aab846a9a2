"""Optuna's standard views of a sweep for the report page: the best trial, parameter importance
(Optuna's default evaluator), parallel coordinates and contours (Optuna's matplotlib plots)."""

from __future__ import annotations

import html
import io
import os
import warnings
from pathlib import Path

from pfl.report.collect import Collection, Row
from pfl.sweep.log_lines import short_params, short_value


def best_rows(coll: Collection) -> list[Row]:
    """Per study, the best complete trial (single objective)."""
    if coll.kind != "optuna" or len(coll.objectives) != 1:
        return []
    sign = 1 if coll.directions[0] == "maximize" else -1
    out = []
    for study in coll.studies:
        done = [r for r in coll.rows if r.study == study and r.state == "COMPLETE" and r.values and r.values[0] is not None]
        if done:
            out.append(max(done, key=lambda r: (sign * r.values[0], -r.number)))
    return out


def best_callout(coll: Collection, out_dir: Path) -> str:
    parts = []
    for r in best_rows(coll):
        where = f" in {html.escape(r.study)}" if len(coll.studies) > 1 else ""
        link = ""
        if r.run_dir is not None:
            rel = os.path.relpath(r.run_dir, out_dir)
            link = f' (<a href="{html.escape(rel)}">{html.escape(rel)}</a>)'
        parts.append(f"<p class='best'>Best trial #{r.number}{where}: {html.escape(coll.objectives[0])} = "
                     f"<b>{short_value(r.values[0])}</b> with {html.escape(short_params(r.params))}{link}</p>")
    return "".join(parts)


def _studies(coll: Collection):
    import optuna

    if coll.kind != "optuna" or not coll.storage:
        return []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return [optuna.load_study(study_name=name, storage=coll.storage) for name in coll.studies]


def _complete(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _first_objective(study):
    """The first objective as a target to minimize (how Optuna's evaluators read a target)."""
    from optuna.study import StudyDirection

    sign = -1.0 if study.directions[0] == StudyDirection.MAXIMIZE else 1.0
    return lambda t: sign * t.values[0]


def importances(study) -> dict[str, float]:
    """Optuna's parameter importance (its default evaluator) of the first objective; {} when undefined."""
    import optuna

    if _complete(study) < 2 or len(study.best_trials or []) == 0:
        return {}
    target = None if len(study.directions) == 1 else _first_objective(study)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "computes the importances ... to achieve low target values": it is
            return optuna.importance.get_param_importances(study, target=target)
    except (RuntimeError, ValueError):  # one distinct value of every parameter, ...
        return {}


def _png_of(axes) -> bytes:
    import numpy as np

    ax = np.asarray(axes).flat[0]
    fig = ax.figure
    fig.set_size_inches(max(fig.get_size_inches()[0], 7), max(fig.get_size_inches()[1], 4))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def figures(coll: Collection) -> list[tuple[str, str, bytes | None]]:
    """(title, note, PNG) of each view per study: parameter importance, parallel coordinates, contour."""
    import matplotlib

    matplotlib.use("Agg")
    import optuna.visualization.matplotlib as ovm

    out = []
    for study in _studies(coll):
        if _complete(study) < 2:
            continue
        name = f" ({study.study_name})" if len(coll.studies) > 1 else ""
        target = None if len(study.directions) == 1 else (lambda t: t.values[0])  # plotted as it is
        tname = coll.objectives[0]
        imp = importances(study)
        note = ", ".join(f"{k}: {v:.2f}" for k, v in imp.items())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's matplotlib views are "experimental"
            if imp:
                out.append((f"Parameter importance{name}", note, _png_of(ovm.plot_param_importances(study, target=target, target_name=tname))))
            out.append((f"Parallel coordinates{name}", "", _png_of(ovm.plot_parallel_coordinate(study, target=target, target_name=tname))))
        pair = list(imp)[:2] if len(imp) >= 2 else None
        data = contour(study, pair, tname) if pair else None
        if data is not None:
            out.append((f"Contour{name}", f"{tname} over {pair[0]} and {pair[1]} (the two most important)", data))
    return out


def contour(study, pair: list[str], target_name: str) -> bytes | None:
    """The first objective over two parameters: filled contours of the complete trials (matplotlib's
    triangulation, no SciPy), the trials as points; log axes for parameters searched on a log scale."""
    from matplotlib.figure import Figure
    from matplotlib.tri import Triangulation
    from optuna.trial import TrialState

    import numpy as np

    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if all(p in t.params for p in pair)]
    if len(trials) < 4:
        return None
    logs = [getattr(trials[-1].distributions[p], "log", False) for p in pair]
    xy = np.array([[float(t.params[p]) for p in pair] for t in trials])
    z = np.array([t.values[0] for t in trials])
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    coords = [np.log10(xy[:, i]) if logs[i] else xy[:, i] for i in range(2)]
    try:
        tri = Triangulation(coords[0], coords[1])
        filled = ax.tricontourf(tri, z, levels=12, cmap="viridis")
        fig.colorbar(filled, ax=ax, label=target_name)
    except (ValueError, RuntimeError):  # collinear points: the trials alone
        pass
    ax.scatter(coords[0], coords[1], c="k", s=12)
    for i, (label, log) in enumerate(zip(pair, logs)):
        (ax.set_xlabel if i == 0 else ax.set_ylabel)(f"log10 {label}" if log else label)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()
