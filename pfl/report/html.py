"""One self-contained HTML page: tables and PNG figures embedded as base64."""

from __future__ import annotations

import base64
import html
import math
import os
from collections import Counter
from pathlib import Path

from pfl.report import figures, optuna_views
from pfl.report.collect import Collection, Row

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f2f2f2; position: sticky; top: 0; }
td.text { text-align: left; }
tr.COMPLETE td.state { color: #1a7f37; } tr.PRUNED td.state { color: #777; }
tr.FAIL td.state, tr.INCOMPLETE td.state { color: #c00; }
tr.front td { font-weight: 600; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.notes { color: #555; font-size: 13px; }
.best { background: #eef7ee; border-left: 4px solid #1a7f37; padding: 0.4em 0.8em; }
"""


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4g}" if abs(v) < 1e-3 or abs(v) >= 1e4 else f"{v:.4f}".rstrip("0").rstrip(".")
    return html.escape(str(v))


def _img(data: bytes | None, alt: str) -> str:
    if data is None:
        return ""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _sort_key(coll: Collection):
    sign = 1 if coll.directions and coll.directions[0] == "maximize" else -1

    def key(r: Row):
        v = r.values[0] if r.values else None
        has = v is not None and r.state == "COMPLETE"
        return (r.study, not has, -sign * v if has else 0, r.number)
    return key


def _table(coll: Collection, out_dir: Path, front_ids: set) -> str:
    params = coll.param_names
    head = ["study"] if len(coll.studies) > 1 else []
    head += ["trial" if coll.kind == "optuna" else "run", "state", *params, *coll.objectives, "reason / note", "run"]
    lines = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for r in sorted(coll.rows, key=_sort_key(coll)):
        cls = r.state + (" front" if (r.study, r.number) in front_ids else "")
        cells = [f'<td class="text">{html.escape(r.study)}</td>'] if len(coll.studies) > 1 else []
        cells.append(f"<td>{r.number}</td>")
        cells.append(f'<td class="state text">{r.state}</td>')
        cells += [f"<td>{_fmt(r.params.get(p))}</td>" for p in params]
        cells += [f"<td>{_fmt(v)}</td>" for v in (r.values or [None] * len(coll.objectives))]
        note = r.reason
        if r.state == "PRUNED" and r.intermediate:
            last = max(r.intermediate)
            note = note or f"pruned after round {last} (reported {r.intermediate[last]:.4f})"
        cells.append(f'<td class="text">{html.escape(note)}</td>')
        link = ""
        if r.run_dir is not None:
            rel = os.path.relpath(r.run_dir, out_dir)
            link = f'<a href="{html.escape(rel)}">{html.escape(rel)}</a>'
        cells.append(f'<td class="text">{link}</td>')
        lines.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


KIND = {"optuna": "Optuna sweep", "grid": "Hydra grid (hyper-parameters)", "seeds": "seed grid (only the seed varies)",
        "run": "single run"}


def _seed_table(coll: Collection) -> str:
    """Mean ± sample std (n) of each objective over the complete runs."""
    import statistics

    head = "".join(f"<th>{html.escape(o)}</th>" for o in coll.objectives)
    cells = []
    for i in range(len(coll.objectives)):
        vals = [r.values[i] for r in coll.rows if r.values and r.values[i] is not None]
        if not vals:
            cells.append("<td></td>")
            continue
        std = statistics.stdev(vals) if len(vals) > 1 else 0.0
        cells.append(f"<td>{_fmt(statistics.fmean(vals))} ± {_fmt(std)} (n={len(vals)})</td>")
    return f"<table><tr><th>over seeds</th>{head}</tr><tr><td class='text'>mean ± std</td>{''.join(cells)}</tr></table>"


def _run_page(coll: Collection, out_dir: Path) -> list[str]:
    r = coll.rows[0]
    parts = ["<h2>Summary</h2><table>" + "".join(
        f"<tr><th>{html.escape(o)}</th><td>{_fmt(v)}</td></tr>" for o, v in zip(coll.objectives, r.values)) + "</table>"]
    files = [p for p in ("metrics.csv", "summary.json", "config.yaml", "clients_heldout.csv", "clients_train.csv", "pfl.log")
             if (r.run_dir / p).is_file()]
    parts.append("<p class='notes'>files: " + " ".join(
        f'<a href="{html.escape(os.path.relpath(r.run_dir / p, out_dir))}">{p}</a>' for p in files) + "</p>")
    for png in sorted(Path(r.run_dir).glob("plots/*.png")):
        parts.append(f"<h3>{html.escape(png.stem.replace('_', ' '))}</h3>" + _img(png.read_bytes(), png.stem))
    return parts


def render(coll: Collection, out_dir: Path) -> str:
    states = Counter(r.state for r in coll.rows)
    pareto_png, fronts = figures.pareto(coll) if coll.kind == "optuna" else (None, {})
    front_ids = {(r.study, r.number) for rows in fronts.values() for r in rows}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>pfl report: {html.escape(coll.title)}</title>",
             f"<style>{CSS}</style></head><body>",
             f"<h1>{html.escape(coll.title)}</h1>",
             "<p class='notes'>" + html.escape(
                 f"{KIND.get(coll.kind, coll.kind)}; "
                 f"{len(coll.rows)} {'trials' if coll.kind == 'optuna' else 'runs'}: "
                 + ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))
                 + "; objectives: " + ", ".join(f"{o} ({d})" for o, d in zip(coll.objectives, coll.directions)))
             + "<br>" + "<br>".join(html.escape(n) for n in coll.notes) + "</p>"]
    if fronts:
        parts.append("<h2>Pareto front</h2>")
        for study, rows in fronts.items():
            desc = "; ".join(f"#{r.number}: " + ", ".join(_fmt(v) for v in r.values[:2]) for r in rows)
            parts.append(f"<p class='notes'>{html.escape(study)}: {html.escape(desc)}</p>")
        parts.append(_img(pareto_png, "Pareto front"))
    if coll.kind == "run":
        parts += _run_page(coll, out_dir)
        parts.append("</body></html>")
        return "\n".join(parts)
    if coll.kind == "seeds":
        parts.append("<h2>Over seeds</h2>" + _seed_table(coll))
    parts.append(optuna_views.best_callout(coll, out_dir))
    parts.append("<h2>Trials</h2>" if coll.kind == "optuna" else "<h2>Runs</h2>")
    parts.append(_table(coll, out_dir, front_ids))
    figs = [("Objective against each parameter", figures.objective_vs_params(coll) if coll.kind != "seeds" else None),
            ("Optimization history", figures.history(coll)),
            ("Convergence over seeds", figures.seed_bands(coll) if coll.kind == "seeds" else None),
            ("Convergence", figures.convergence(coll))]
    for title, data in figs:
        if data is not None:
            parts.append(f"<h2>{title}</h2>" + _img(data, title))
    for title, note, data in (optuna_views.figures(coll) if coll.kind == "optuna" else []):
        parts.append(f"<h2>{html.escape(title)}</h2>" + (f"<p class='notes'>{html.escape(note)}</p>" if note else "")
                     + _img(data, title))
    parts.append("</body></html>")
    return "\n".join(parts)
