"""`python -m pfl.report DIR`: one self-contained HTML page for a sweep, a grid, a seed grid or one run.

    python -m pfl.report multirun/sweeps/fedavg_e_lr            # -> multirun/sweeps/fedavg_e_lr/report.html
    python -m pfl.report multirun/2026-01-01/12-00-00 --objective personalized_accuracy.5
    python -m pfl.report DIR --out /tmp/report.html

The page holds a table of the trials or runs (parameters, objectives, state,
failure reason, run directory), each objective against each parameter, the
Pareto front of multi-objective studies, the optimization history and the
convergence curves of all runs overlaid (from their metrics.csv).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pfl.report", description=__doc__.splitlines()[0])
    ap.add_argument("directory", help="a sweep directory (with sweep.json), a Hydra multirun directory (a grid "
                                      "of hyper-parameters or of seeds) or one run's directory")
    ap.add_argument("--out", help="output file (default: DIRECTORY/report.html)")
    ap.add_argument("--objective", action="append",
                    help="multirun only: dotted path into summary.json, repeatable (default: initial and "
                         "personalized accuracy)")
    args = ap.parse_args(argv)

    from pfl.report.collect import collect
    from pfl.report.html import render

    try:
        coll = collect(args.directory, args.objective)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.directory) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(render(coll, out.parent.resolve()))
    tmp.replace(out)  # atomic: a reader never sees half a page
    print(f"wrote {out} ({len(coll.rows)} {'trials' if coll.kind == 'optuna' else 'runs'}; {coll.kind})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
