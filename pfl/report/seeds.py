"""Mean and standard deviation over seeds (the paper reports 9 replicas).

Reads every run directory under the given paths (any folder holding a
`summary.json`, e.g. the jobs of `python -m pfl -m seed=range(9) ...`), groups
the runs by their setting (the job's command-line overrides without `seed`,
from Hydra's `.hydra/overrides.yaml`; else the summary's algorithm, data set
and model), and aggregates every numeric value of summary.json per group:
mean, sample standard deviation (n-1; 0 for one run) and n. Values a run did
not produce (e.g. rounds to a target never reached: null) are left out of
that value's n.

A run of `replicas=R` (pfl.engine.replicas) counts as R runs, one per replica (its summary.json
holds each replica's own summary under `replicas`), so `replicas=9` and nine seeded runs give the
same table; `replicas` is left out of the setting like `seed`.

    python -m pfl.report.seeds multirun/2026-01-01/12-00-00 [--metrics KEY ...] [--out DIR]

writes seeds.json (everything) and seeds.csv (the chosen metrics, one row per
setting) in --out (default: the first path) and prints the table, and two plots of the first paper:
seeds_bands.png (its Figure 1: held-out initial and personalized accuracy per evaluated round, mean
± one sample std over the replicas of each setting) and seeds_scatter.png (its Figure 3: one point
per replica, final initial vs personalized accuracy, a colour per setting).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import statistics
from pathlib import Path

from pfl.engine.files import atomic_write_text, write_json

DEFAULT_METRICS = ("initial_accuracy", "personalized_accuracy.*", "fraction_worse", "rounds_to_target.*",
                   "train_clients.initial_accuracy", "train_clients.personalized_accuracy.*")


def find_runs(*paths: str | Path) -> list[Path]:
    """Run directories (holding summary.json) at or below `paths`, sorted."""
    found = set()
    for p in map(Path, paths):
        if (p / "summary.json").is_file():
            found.add(p)
        found.update(s.parent for s in p.rglob("summary.json"))
    return sorted(found)


def flatten(node, prefix: str = "") -> dict[str, float | None]:
    """Numeric leaves of a summary by dotted path ('personalized_accuracy.5')."""
    out: dict[str, float | None] = {}
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else None
    if items is None:
        if node is None or (isinstance(node, (int, float)) and not isinstance(node, bool)):
            out[prefix] = None if node is None else float(node)
        return out
    for k, v in items:
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def setting_of(run_dir: Path, summary: dict) -> str:
    """A run's setting: its overrides without seed (or a description from summary.json)."""
    overrides = run_dir / ".hydra" / "overrides.yaml"
    if overrides.is_file():
        import yaml

        items = [str(o) for o in (yaml.safe_load(overrides.read_text()) or [])]
        items = [o for o in items if o.lstrip("+~").split("=", 1)[0]
                 not in ("seed", "replicas", "hydra.run.dir", "hydra.sweep.dir")]
        return " ".join(sorted(items)) or "(defaults)"
    return f"algorithm={summary.get('algorithm')} dataset={summary.get('dataset')} model={summary.get('model')}"


def aggregate(run_dirs: list[Path]) -> list[dict]:
    """One entry per setting: {setting, runs, seeds, stats: {key: {mean, std, n}}}."""
    groups: dict[str, list[tuple[Path, dict, int | None]]] = {}
    for d in run_dirs:
        summary = json.loads((Path(d) / "summary.json").read_text())
        setting = setting_of(Path(d), summary)
        parts = summary.get("replicas")
        for i, part in (enumerate(parts) if parts else [(None, summary)]):  # a replicated run: one entry per replica
            groups.setdefault(setting, []).append((Path(d), part, i))
    out = []
    for setting, runs in groups.items():
        flat = [flatten(s) for _, s, _ in runs]
        keys = [k for k in flat[0]] + [k for f in flat[1:] for k in f if k not in flat[0]]
        stats = {}
        for k in dict.fromkeys(keys):
            vals = [f[k] for f in flat if f.get(k) is not None and not math.isnan(f[k])]
            if vals:
                stats[k] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                            "n": len(vals)}
        out.append({"setting": setting, "runs": [str(d) for d, _, _ in runs],
                    "replica": [i for _, _, i in runs],  # the replica of a replicated run (None: a plain run)
                    "seeds": [s.get("seed") for _, s, _ in runs], "stats": stats})
    return out


def select(stats: dict, patterns: tuple[str, ...] | list[str]) -> list[str]:
    """Keys matching patterns ('a.*' matches a's direct children), in pattern order."""
    keys = []
    for pat in patterns:
        if pat.endswith(".*"):
            base = pat[:-1]
            keys += [k for k in stats if k.startswith(base) and "." not in k[len(base):]]
        elif pat in stats:
            keys.append(pat)
    return list(dict.fromkeys(keys))


def write_report(groups: list[dict], out_dir: Path, metrics=DEFAULT_METRICS) -> str:
    """seeds.json and seeds.csv in out_dir; returns the table as text."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "seeds.json", groups)
    keys = list(dict.fromkeys(k for g in groups for k in select(g["stats"], metrics)))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["setting", "runs"] + [f"{k}_{s}" for k in keys for s in ("mean", "std", "n")])
    common = set.intersection(*(set(g["setting"].split()) for g in groups)) if len(groups) > 1 else set()
    lines = [f"common to all settings: {' '.join(sorted(common))}"] if common else []
    for g in groups:
        row = [g["setting"], len(g["runs"])]
        cells = []
        for k in keys:
            st = g["stats"].get(k)
            row += [st["mean"], st["std"], st["n"]] if st else ["", "", 0]
            if st:
                cells.append(f"{k}={st['mean']:.4f}±{st['std']:.4f} (n={st['n']})")
        w.writerow(row)
        shown = " ".join(t for t in g["setting"].split() if t not in common) or g["setting"]
        lines.append(f"{shown}  [{len(g['runs'])} runs, seeds {g['seeds']}]\n    " + "\n    ".join(cells))
    atomic_write_text(out_dir / "seeds.csv", buf.getvalue())
    return "\n".join(lines)


def _final_key(keys) -> str | None:
    """The personalized accuracy the plots show: after the most reported local epochs."""
    from pfl.engine import names

    pers = names.pers_epochs(keys)
    return names.pers(pers[-1]) if pers else None


def band_series(run_dirs: list[str | Path], key: str, replicas: list | None = None
                ) -> tuple[list[float], list[float], list[float]]:
    """Rounds, mean and sample std (0 for one run) of metrics.csv column `key` over runs, per round
    where at least one run has it. `replicas[j]` (not None): run j is that replica of a replicated
    run, whose column is `replica<r>/<key>` (pfl.engine.replicas)."""
    from pfl.engine.replicas import replica_name
    from pfl.report.collect import read_metrics

    by_round: dict[float, list[float]] = {}
    for d, r in zip(run_dirs, replicas or [None] * len(run_dirs)):
        column = key if r is None else replica_name(r, key)
        for row in read_metrics(Path(d)):
            if column in row and not math.isnan(row[column]):
                by_round.setdefault(row["round"], []).append(row[column])
    rounds = sorted(by_round)
    return (rounds, [statistics.fmean(by_round[r]) for r in rounds],
            [statistics.stdev(by_round[r]) if len(by_round[r]) > 1 else 0.0 for r in rounds])


def write_plots(groups: list[dict], out_dir: Path) -> list[Path]:
    """seeds_bands.png and seeds_scatter.png (the first paper's Figures 1 and 3) in out_dir."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from pfl.engine import names
    from pfl.report.collect import read_metrics

    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive"]
    common = set.intersection(*(set(g["setting"].split()) for g in groups)) if len(groups) > 1 else set()
    label = {g["setting"]: " ".join(t for t in g["setting"].split() if t not in common) or g["setting"] for g in groups}
    written = []
    bands, scatter = Figure(figsize=(7.0, 4.4), dpi=110), Figure(figsize=(5.6, 4.4), dpi=110)
    FigureCanvasAgg(bands), FigureCanvasAgg(scatter)
    ax, sx = bands.add_subplot(1, 1, 1), scatter.add_subplot(1, 1, 1)
    drawn = False
    for i, g in enumerate(groups):
        c = colours[i % len(colours)]
        keys = {k for d in g["runs"] for row in read_metrics(Path(d)) for k in row}
        pers = _final_key(keys)
        for key, style, what in ((names.initial(), "--", "initial"), (pers, "-", "personalized")):
            if key is None or key not in keys:
                continue
            rounds, mean, std = band_series(g["runs"], key, g.get("replica"))
            ax.plot(rounds, mean, style, color=c, label=f"{label[g['setting']]}, {what}")
            ax.fill_between(rounds, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                            color=c, alpha=0.2)
            drawn = True
        pts = []
        for d, r in zip(g["runs"], g.get("replica") or [None] * len(g["runs"])):
            s = json.loads((Path(d) / "summary.json").read_text())
            s = s if r is None else s["replicas"][r]
            k = max(s.get("personalized_accuracy") or {"": None}, key=lambda e: int(e) if e.isdigit() else -1)
            if s.get("initial_accuracy") is not None and (s.get("personalized_accuracy") or {}).get(k) is not None:
                pts.append((s["initial_accuracy"], s["personalized_accuracy"][k]))
        if pts:
            sx.scatter(*zip(*pts), color=c, s=22, label=f"{label[g['setting']]} ({len(pts)} runs)")
    if drawn:
        ax.set_xlabel("round")
        ax.set_ylabel("held-out accuracy")
        ax.set_title("mean ± 1 std over seeds (dashed: initial, solid: personalized)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, handlelength=3)
        bands.tight_layout()
        bands.savefig(out_dir / "seeds_bands.png")
        written.append(out_dir / "seeds_bands.png")
    if sx.collections:
        sx.set_xlabel("initial accuracy (held-out)")
        sx.set_ylabel("personalized accuracy (held-out)")
        sx.set_title("one point per seed", fontsize=9)
        sx.grid(alpha=0.3)
        sx.legend(fontsize=7)
        scatter.tight_layout()
        scatter.savefig(out_dir / "seeds_scatter.png")
        written.append(out_dir / "seeds_scatter.png")
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pfl.report.seeds", description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="multirun directories or run directories")
    ap.add_argument("--metrics", nargs="*", default=list(DEFAULT_METRICS), help="summary keys for seeds.csv ('a.*': children)")
    ap.add_argument("--out", default=None, help="where seeds.json / seeds.csv go (default: the first path)")
    args = ap.parse_args(argv)
    runs = find_runs(*args.paths)
    if not runs:
        print(f"error: no run directory with summary.json under {' '.join(args.paths)}")
        return 2
    groups = aggregate(runs)
    out = Path(args.out or args.paths[0])
    print(write_report(groups, out, args.metrics))
    for path in write_plots(groups, out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
