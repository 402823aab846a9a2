"""`python -m pfl.bench.gpu`: the whole GPU check in one command (a few minutes on one GPU).

Prints the table of the GPU targets (issue 11, item 3), each measured in fresh processes:

1. vmap vs the plain PyTorch loop per round at 20 clients (the `peers` workload on CUDA),
   with the sequential backend beside them; target: vmap >= 10x the plain loop.
2. One personalization evaluation of 900 held-out EMNIST-shaped clients x 5 epochs
   (vmap backend, engine.eval_chunk_size as configured; the plain loop is not run here, it would
   take minutes); target: < 10 s.
3. The first paper's Table 1 grid (8 configurations x 500 rounds x 9 seeds), estimated from
   the measured vmap s/round of (1) and one evaluation of (2) per run; target: < 1 GPU-hour.

Without a CUDA device it prints one line saying so and exits with status 0.
"""

from __future__ import annotations

import argparse
import sys
import time

TABLE1 = {"configs": 8, "rounds": 500, "seeds": 9}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pfl.bench.gpu", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--heldout", type=int, default=900)
    ap.add_argument("--json", help="also write the measurements to this file")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: python -m pfl.bench.gpu measures a GPU and has nothing to do here")
        return 0
    from pfl.bench.runner import collect, markdown, write_json

    t0 = time.time()
    bench = argparse.Namespace(device="cuda", repeats=args.repeats, rounds=args.rounds, warmup=args.warmup,
                               clients=None, examples=None, cohort=None, heldout=None)
    table, rows = collect(["peers"], ["vmap", "sequential"], [1], bench)
    ev = argparse.Namespace(**{**vars(bench), "repeats": 1, "rounds": 1, "warmup": 1})
    ev_table, ev_rows = collect(["eval"], ["vmap"], [1], ev, sizes={"eval": {"heldout": args.heldout}}, plain=False)
    rows.update(ev_rows)
    print(markdown(table + ev_table))
    vmap = next(r for r in table if r["arm"] == "pfl vmap")
    plain = next(r for r in table if r["kind"] == "plain")
    ev_s = ev_table[0]["median_s"]
    runs = TABLE1["configs"] * TABLE1["seeds"]
    grid_h = (runs * TABLE1["rounds"] * vmap["median_s"] + runs * ev_s) / 3600
    targets = [
        ("vmap vs plain loop per round, 20 clients", f"{plain['median_s'] / vmap['median_s']:.1f}x", ">= 10x"),
        (f"{args.heldout} held-out clients x 5 personalization epochs", f"{ev_s:.1f} s", "< 10 s"),
        ("Table 1 grid (8 configs x 500 rounds x 9 seeds), estimated", f"{grid_h:.2f} GPU-h", "< 1 GPU-h"),
    ]
    print("\n| target | measured | goal |\n|---|---|---|")
    for name, got, goal in targets:
        print(f"| {name} | {got} | {goal} |")
    print(f"\n({torch.cuda.get_device_name(0)}; {time.time() - t0:.0f} s; the grid estimate is "
          f"{runs} runs x ({TABLE1['rounds']} rounds x {vmap['median_s']:.3f} s + one evaluation {ev_s:.1f} s))")
    if args.json:
        write_json(args.json, bench, table + ev_table, rows, time.time() - t0,
                   targets=[{"target": n, "measured": g, "goal": o} for n, g, o in targets])
    return 0


if __name__ == "__main__":
    sys.exit(main())
