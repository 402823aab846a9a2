"""`python -m pfl.bench.gpu`: the GPU targets in one command (a few minutes on one GPU).

Measures, each arm in fresh processes (pfl.bench.runner), and prints beside the plain PyTorch loop:

1. peers: vmap, sequential and the plain loop per round at 20 of 100 clients (the `peers` workload);
   target: vmap >= 10x faster than the plain loop. GPU utilization (NVML, sampled every 0.1 s during
   the measured rounds, pfl.bench.measure) is reported for every arm.
2. eval: one personalization evaluation of 900 held-out EMNIST-shaped clients x 5 epochs with the
   vmap backend (target < 10 s), and the plain loop on `--plain-heldout` of those clients, scaled
   linearly to 900 (each client is trained alone, so its time is linear in the clients).
3. replicas: the peers round with `replicas=9` (the 9 seeds of the first paper's Table 1 as a batch
   axis: one vmap over 9 x 20 clients).
4. The Table 1 grid (8 configurations x 500 rounds x 9 seeds), estimated as
   8 x (500 x s/round with replicas=9 + 9 x one evaluation of (2)); target < 1 GPU-hour (with
   `--replicas R` < 9: 8 x ceil(9 / R) such runs). Without a replicas measurement, 72 runs of
   500 x the vmap s/round of (1) + one evaluation each.

A step that fails is reported in the table and the JSON, and the command then exits 1; the other
steps still run. `--device cpu --tiny` runs the whole path on a CPU with tiny sizes (a check of the
script, not a measurement). With `--device cuda` and no CUDA device it prints one line and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

TABLE1 = {"configs": 8, "rounds": 500, "seeds": 9}
# --tiny: sizes for a check of the script on a CPU (seconds per arm, not a measurement)
TINY = {"clients": 4, "examples": 20, "cohort": 2, "heldout": 3, "plain_heldout": 2, "replicas": 2,
        "repeats": 1, "rounds": 1, "warmup": 0}


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m pfl.bench.gpu", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --tiny: a check of the script)")
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per arm of the peers workload")
    ap.add_argument("--rounds", type=int, default=3, help="measured rounds per process")
    ap.add_argument("--warmup", type=int, default=2, help="rounds before the measured ones")
    ap.add_argument("--heldout", type=int, default=900, help="held-out clients of the evaluation")
    ap.add_argument("--plain-heldout", type=int, default=90, help="clients the plain evaluation loop really runs")
    ap.add_argument("--replicas", type=int, default=TABLE1["seeds"], help="replicas of the grid arm (0: skip it)")
    ap.add_argument("--clients", type=int, help="peers population (default 100)")
    ap.add_argument("--examples", type=int, help="examples per client (default 200)")
    ap.add_argument("--cohort", type=int, help="clients per round (default 20)")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes: " + ", ".join(f"{k}={v}" for k, v in TINY.items()))
    ap.add_argument("--json", help="also write the measurements to this file")
    args = ap.parse_args(argv)
    if args.tiny:
        vars(args).update(TINY)
    if args.device not in ("cuda", "cpu"):
        ap.error(f"--device {args.device!r} is not allowed: expected cuda or cpu")
    return args


def _step(name: str, fn, errors: dict):
    """fn() or, when it fails, None with the error's last line in `errors[name]` (the traceback on stderr)."""
    try:
        return fn()
    except Exception as exc:  # one broken step must not lose the others' measurements
        traceback.print_exc()
        errors[name] = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]
        print(f"step {name} failed: {errors[name]}", file=sys.stderr, flush=True)
        return None


def _util(rows: dict, key: tuple) -> float | None:
    """Median over repeats of the mean GPU utilization sampled during the measured rounds."""
    vals = [m["gpu_util_mean"] for m in rows.get(key, []) if "gpu_util_mean" in m]
    return statistics.median(vals) if vals else None


def _replicas_arm(args, bench, case: dict) -> dict:
    from pfl.bench.runner import measure

    arm = {"arm": f"pfl vmap, replicas={args.replicas}", "kind": "engine", "backend": "vmap", "threads": 2,
           "devices": 1, "overrides": [f"replicas={args.replicas}"]}
    with tempfile.TemporaryDirectory(prefix="pfl_gpu_") as tmp:
        res = measure(arm, case, bench, Path(tmp), "replicas")
    return {**res, "median_s": statistics.median(res["times"])}


def measure_all(args, on_step=lambda out, errors: None) -> tuple[dict, dict]:
    """Every step's results ({name: ...}) and the failed steps ({name: error}); `on_step(out, errors)` after
    each step (the JSON is rewritten then, so a run stopped by a time limit keeps what it measured)."""
    from pfl.bench.cases import CASES, sized
    from pfl.bench.runner import collect

    errors: dict = {}
    bench = argparse.Namespace(device=args.device, repeats=args.repeats, rounds=args.rounds, warmup=args.warmup,
                               clients=args.clients, examples=args.examples, cohort=args.cohort, heldout=None)
    peers = {"clients": args.clients, "examples": args.examples, "cohort": args.cohort, "heldout": None}
    ev = argparse.Namespace(**{**vars(bench), "repeats": 1, "rounds": 1, "warmup": 1 if args.warmup else 0})
    evsize = {"examples": args.examples}
    steps = {
        "peers": lambda: collect(["peers"], ["vmap", "sequential"], [1], bench, sizes={"peers": peers},
                                 thread_arms=False),  # on a CPU (--tiny) too: the GPU run's arms, no more
        "eval": lambda: collect(["eval"], ["vmap"], [1], ev, plain=False,
                                sizes={"eval": {**evsize, "heldout": args.heldout}}),
        "eval_plain": lambda: collect(["eval"], [], [], ev, sizes={  # the reference arm only
            "eval": {**evsize, "heldout": min(args.plain_heldout, args.heldout)}}),
    }
    if args.replicas > 1:
        steps["replicas"] = lambda: _replicas_arm(args, bench, sized(CASES["peers"], **peers).as_dict())
    out: dict = {}
    for name, fn in steps.items():
        out[name] = _step(name, fn, errors)
        on_step(out, errors)
    return out, errors


def _row(result, arm: str) -> dict | None:
    if not result:
        return None
    return next((r for r in result[0] if r["arm"] == arm), None)


def targets(out: dict, errors: dict, args) -> list[dict]:
    """The issue's targets from the measurements: [{target, measured, goal, met}] (met None: not measured)."""
    vmap, seq, plain = (_row(out.get("peers"), a) for a in ("pfl vmap", "pfl sequential", "plain 2 threads"))
    ev, ev_plain = _row(out.get("eval"), "pfl vmap"), _row(out.get("eval_plain"), "plain 2 threads")
    rep = out.get("replicas")
    t = []

    def add(name, steps, value, text, goal, met):
        why = "; ".join(f"{s}: {errors[s]}" for s in steps if s in errors) or "no measurement"
        t.append({"target": name, "measured": text if value is not None else f"not measured ({why})",
                  "value": value, "goal": goal, "met": None if value is None else bool(met(value))})

    speed = plain["median_s"] / vmap["median_s"] if vmap and plain else None
    add(f"vmap vs plain loop per round, {args.cohort or 20} clients (peers)", ["peers"], speed,
        speed and f"{speed:.1f}x (vmap {vmap['median_s']:.3f} s, plain {plain['median_s']:.3f} s"
                  + (f", sequential {seq['median_s']:.3f} s)" if seq else ")"), ">= 10x", lambda v: v >= 10)
    ev_s = ev["median_s"] if ev else None
    scale = args.heldout / min(args.plain_heldout, args.heldout)
    plain_text = (f"; plain loop {ev_plain['median_s'] * scale:.1f} s (measured on "
                  f"{min(args.plain_heldout, args.heldout)} clients x {scale:g})") if ev_plain else ""
    add(f"{args.heldout} held-out clients x 5 personalization epochs", ["eval", "eval_plain"], ev_s,
        ev_s is not None and f"{ev_s:.2f} s{plain_text}", "< 10 s", lambda v: v < 10)
    grid, how = None, ""
    if rep and ev_s is not None:
        batches = -(-TABLE1["seeds"] // args.replicas)  # runs of `replicas` seeds each per configuration
        grid = TABLE1["configs"] * batches * (TABLE1["rounds"] * rep["median_s"] + args.replicas * ev_s) / 3600
        how = f"{TABLE1['configs'] * batches} runs with replicas={args.replicas}: {rep['median_s']:.3f} s/round"
    elif vmap and ev_s is not None:
        runs = TABLE1["configs"] * TABLE1["seeds"]
        grid = runs * (TABLE1["rounds"] * vmap["median_s"] + ev_s) / 3600
        how = f"{runs} separate runs of {vmap['median_s']:.3f} s/round"
    add("Table 1 grid (8 configs x 500 rounds x 9 seeds), estimated", ["replicas", "peers", "eval"], grid,
        grid is not None and f"{grid:.3f} GPU-h ({how})", "< 1 GPU-h", lambda v: v < 1)
    rows = out.get("peers")[1] if out.get("peers") else {}
    utils = {a: _util(rows, ("peers", a)) for a in ("pfl vmap", "pfl sequential", "plain 2 threads")}
    if rep and "gpu_util_mean" in rep:
        utils[f"replicas={args.replicas}"] = rep["gpu_util_mean"]
    shown = {a: u for a, u in utils.items() if u is not None}
    add("GPU utilization during the measured rounds (mean of 0.1 s samples)", ["peers"], shown.get("pfl vmap"),
        ", ".join(f"{a} {u:.0f}%" for a, u in shown.items()), "reported", lambda v: True)
    return t


def report(out: dict, tgts: list[dict], device_name: str, seconds: float) -> str:
    from pfl.bench.runner import markdown

    tables = [r[0] for k, r in out.items() if k != "replicas" and r]
    lines = [markdown([row for tb in tables for row in tb])] if tables else []
    rep = out.get("replicas")
    if rep:
        lines.append(f"\npfl vmap with replicas: {rep['median_s']:.3f} s/round (median of {len(rep['times'])} rounds)")
    lines.append("\n| target | measured | goal | met |\n|---|---|---|---|")
    for t in tgts:
        met = "—" if t["met"] is None else ("yes" if t["met"] else "no")
        lines.append(f"| {t['target']} | {t['measured']} | {t['goal']} | {met} |")
    lines.append(f"\n({device_name}; {seconds:.0f} s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: python -m pfl.bench.gpu measures a GPU and has nothing to do here")
        return 0
    from pfl.bench.runner import write_json

    t0 = time.time()

    def save(out: dict, errors: dict) -> None:
        if args.json:
            table = [row for k, r in out.items() if k != "replicas" and r for row in r[0]]
            rows = {key: v for k, r in out.items() if k != "replicas" and r for key, v in r[1].items()}
            bench = argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "json"})
            write_json(args.json, bench, table, rows, time.time() - t0, targets=targets(out, errors, args),
                       errors=errors, replicas=out.get("replicas"), steps_done=list(out))

    out, errors = measure_all(args, save)
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU (a check of the script, not a measurement)"
    print(report(out, targets(out, errors, args), name, time.time() - t0), flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
