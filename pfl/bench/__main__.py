"""`python -m pfl.bench`: seconds per round and peak memory of pfl against a plain PyTorch loop.

    python -m pfl.bench [--case all|peers,default,lstm,eval,population,startup] [--backend auto,sequential,vmap]
                        [--devices 1,2] [--device cpu|cuda] [--repeats 3] [--rounds 2] [--warmup 1] [--json out.json]

Arms of a case (pfl.bench.cases):
- `plain 2 threads`: the reference, a plain PyTorch loop over the cohort's clients (pfl.bench.plain),
  2 intra-op threads. Every ratio is to this arm's median, measured in the same invocation.
- `plain 1 thread` (devices 1) and `plain 2 x 1 thread` (devices 2: two 1-thread processes at once,
  each training half of every cohort; a round is the slower half; no communication: a lower bound
  of a 2-rank round).
- `pfl <backend>`: the real engine (pfl.bench.engine: `pfl.run.train` with Lightning), 2 threads with
  devices 1; with devices 2 two ranks (`trainer.devices=2`, Lightning's DDP strategy over gloo),
  1 thread each.

Every measurement is a fresh process; the arms are interleaved (arm 1, arm 2, ..., then again) for
`--repeats` repeats; each process runs `--warmup` rounds first, which are not measured. Per repeat
the median round is kept; the table gives the median, min and max of those. Memory: peak RSS of the
process (the whole run; with several processes, the largest one's), and `round MB`: the peak during
the measured rounds alone; CUDA: peak allocated. `startup` times `python -m pfl rounds=1` from the
launch to the first round's start, and to its end.

`--case shakespeare_eval,shakespeare_round` (not part of `all`): TFF Shakespeare's char-LSTM, pfl's
client computation against nn.LSTM client by client, with GFLOP/s and the measured matmul rate
(pfl.bench.shakespeare; options --data-root, --heldout, --cohort, --epochs, --rounds, --arms).
"""

from __future__ import annotations

import argparse
import sys
import time

from pfl.bench.runner import ALL_CASES, collect, markdown, run_worker, write_json


def _list(text: str, allowed, what: str, cast=str) -> list:
    items = [cast(v) for v in text.split(",") if v]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise SystemExit(f"error: {what}={text} is not allowed: expected a comma-separated subset of "
                         f"{', '.join(map(str, allowed))}")
    return items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pfl.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default="all", help="all or a comma-separated list of " + ", ".join(ALL_CASES))
    ap.add_argument("--backend", default="auto", help="engine backends: a comma-separated subset of auto,sequential,vmap")
    ap.add_argument("--devices", default="1,2", help="1, 2 or 1,2 (2: two CPU ranks / two plain processes)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="measured rounds per process (after the warm-up)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--json", help="also write the table (and every measurement) to this file")
    ap.add_argument("--clients", type=int, help="training clients (tiny runs)")
    ap.add_argument("--examples", type=int, help="examples per client (image and text cases)")
    ap.add_argument("--cohort", type=int, help="clients per round")
    ap.add_argument("--heldout", type=int, help="held-out clients")
    ap.add_argument("--data-root", help="shakespeare_* cases: the folder of TFF's shakespeare_{train,test}.h5 "
                    "(default: a stand-in with the same shapes and role sizes)")
    ap.add_argument("--epochs", type=int, default=1, help="shakespeare_round: FedAvg's local epochs E")
    ap.add_argument("--arms", help="shakespeare_* cases: a comma-separated subset of plain,pfl,plain2,pfl2,reference")
    ap.add_argument("--compare-src", metavar="DIR", help="also run every pfl arm with the pfl of another checkout "
                    "(e.g. a worktree of main before a change), interleaved with the others")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return run_worker(args.worker, args.out)
    from pfl.bench import shakespeare

    cases = list(ALL_CASES) if args.case == "all" else _list(args.case, ALL_CASES + shakespeare.CASES, "--case")
    if min(args.repeats, args.rounds, args.epochs) < 1:
        raise SystemExit("error: --repeats, --rounds and --epochs must be >= 1")
    text = [c for c in cases if c in shakespeare.CASES]
    cases = [c for c in cases if c not in shakespeare.CASES]
    if text:
        shakespeare.main(text, args)
        if not cases:
            return 0
    backends = _list(args.backend, ("auto", "sequential", "vmap"), "--backend")
    devices = _list(args.devices, (1, 2), "--devices", int)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda: no CUDA device is visible (use --device cpu)")
    if min(args.repeats, args.rounds) < 1 or args.warmup < 0:
        raise SystemExit("error: --repeats and --rounds must be >= 1, --warmup >= 0")
    t0 = time.time()
    table, rows = collect(cases, backends, devices, args)
    print(markdown(table))
    if args.json:
        write_json(args.json, args, table, rows, time.time() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
