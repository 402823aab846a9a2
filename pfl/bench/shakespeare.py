"""TFF Shakespeare's char-LSTM: pfl's client computation against nn.LSTM client by client, in GFLOP/s.

    python -m pfl.bench --case shakespeare_eval,shakespeare_round [--data-root DIR] [--heldout 4] [--cohort 5]
                        [--epochs 1] [--arms plain,pfl,plain2,pfl2,reference] [--repeats 2]

Data: the real roles of TFF Shakespeare (`--data-root`: the folder with shakespeare_{train,test}.h5)
or, without it, a stand-in of the same shapes (rows of 80 tokens, 90 symbols) and role sizes drawn from
a log-normal fitted to the held-out roles' (median 18, mean 54 training rows; 1..1003).

- shakespeare_eval: the complete personalization evaluation's work on a sample of held-out roles: per
  role, test accuracy, then 5 epochs of local SGD (batch 20), test accuracy after each. The sample is
  `--heldout` roles evenly spaced in size order (the size distribution kept); the time of all 215
  roles is projected as the sample's time x (all roles' FLOPs / the sample's FLOPs).
- shakespeare_round: FedAvg rounds (`--cohort` roles of the 500 training roles, `--epochs` E): the
  cohorts' local training and the weighted mean (pfl: `pfl.engine.round.run_round`, no Lightning).

Arms (fresh processes, interleaved, `--repeats` times): `plain` nn.LSTM loop, 2 threads; `pfl`
(pfl.evaluation.personalize / run_round, sequential clients, CharLSTM's default path), 2 threads;
`plain1` / `pfl1`: the same with 1 thread; `plain2` / `pfl2`: two 1-thread processes at once, each
its share of the roles as the engine splits them over 2 ranks (by example count), timed by the slower; `reference` / `reference1`: pfl
with `model.fused=false`. Every ratio is to the plain arm of the same threads and processes; the
matmul-rate column is to the 2-thread rate (2-thread arms) or processes x the 1-thread rate.
FLOPs are the useful matmul FLOPs of the real rows (forward 2*(in*4H + H*4H) per token and layer and
2*H*V for the head; a training row 3x its forward), the same for every arm; the ceiling is a 2048^2
float32 matmul measured in the same invocation.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

CASES = ("shakespeare_eval", "shakespeare_round")
ARMS = {"plain": ("plain", 2, 1), "pfl": ("pfl", 2, 1), "plain1": ("plain", 1, 1), "pfl1": ("pfl", 1, 1),
        "plain2": ("plain", 1, 2), "pfl2": ("pfl", 1, 2), "reference": ("reference", 2, 1),
        "reference1": ("reference", 1, 1)}
_LAYOUT = {(2, 1): "2 threads", (1, 1): "1 thread", (1, 2): "2 x 1 thread"}
NAMES = {a: {"plain": "plain nn.LSTM", "pfl": "pfl", "reference": "pfl fused=false"}[k] + ", " + _LAYOUT[(t, n)]
         for a, (k, t, n) in ARMS.items()}
SEQ, VOCAB, EMBED, HIDDEN, BATCH, EVAL_EPOCHS, LR = 80, 90, 8, 256, 20, 5, 1.0


def row_flops() -> int:
    """Forward matmul FLOPs of one 80-token row."""
    per_token = 2 * EMBED * 4 * HIDDEN + 2 * HIDDEN * 4 * HIDDEN + 2 * (2 * HIDDEN * 4 * HIDDEN) + 2 * HIDDEN * VOCAB
    return SEQ * per_token


def eval_flops(n_train: int, n_test: int) -> int:
    return EVAL_EPOCHS * 3 * n_train * row_flops() + (EVAL_EPOCHS + 1) * n_test * row_flops()


def load(root: str | None, seed: int = 0):
    """(training population, held-out population) of real or stand-in Shakespeare."""
    if root:
        from pfl.data.shakespeare import load_shakespeare

        data = load_shakespeare(root=root, progress=False)
        return data.train, data.heldout
    from pfl.data.federated import Population

    g = torch.Generator().manual_seed(seed)
    pops = []
    for tag, count in (("t", 500), ("h", 215)):
        sizes = (torch.randn(count, generator=g) * 1.48 + math.log(18)).exp().round().clamp(1, 1003).long().tolist()
        cols = [[], [], [], []]
        for n in sizes:
            for j, m in enumerate((n, max(1, round(0.15 * n)))):
                seq = torch.randint(1, VOCAB, (m, SEQ + 1), generator=g)
                cols[2 * j].append(seq[:, :-1].to(torch.uint8)), cols[2 * j + 1].append(seq[:, 1:])
        pops.append(Population.from_clients([f"{tag}{i}" for i in range(count)], *cols))
    return pops[0], pops[1]


def sample_roles(counts: torch.Tensor, k: int) -> list[int]:
    """k roles evenly spaced in size order (quantiles (j + 0.5) / k)."""
    order = torch.argsort(counts, stable=True)
    return sorted({int(order[min(int((j + 0.5) * len(order) / k), len(order) - 1)]) for j in range(k)})


def round_cohorts(num: int, cohort: int, rounds: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed + 1)
    return [torch.randperm(num, generator=g)[:cohort].sort().values.tolist() for _ in range(rounds)]


def matmul_rate(threads: int) -> float:
    torch.set_num_threads(threads)
    a = torch.randn(2048, 2048)
    a @ a
    best = math.inf
    for _ in range(5):
        t = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t)
    return 2 * 2048 ** 3 / best / 1e9


def _split(items: list, sizes: list[int], w: int, k: int) -> list:
    """Process k's share of w: the engine's own split of clients over ranks (pfl.execution.Shard,
    balanced by example counts)."""
    from pfl.execution import Shard

    return [items[j] for j in Shard(k, w).part(len(items), weights=torch.tensor(sizes)).tolist()]


def plan(case: str, args, train, held) -> dict:
    """The sampled work of a case, its FLOPs and the full workload's FLOPs."""
    if case == "shakespeare_eval":
        counts, tests = held.train.counts, held.test.counts
        ids = sample_roles(counts, args.heldout or 4)
        flops = sum(eval_flops(int(counts[i]), int(tests[i])) for i in ids)
        full = sum(eval_flops(int(n), int(m)) for n, m in zip(counts, tests))
        # untimed warm-up: the smallest role with a full batch (kernel set-up for batch 20 happens there)
        warm = min((i for i in range(len(counts)) if int(counts[i]) >= BATCH), key=lambda i: int(counts[i]))
        return {"work": ids, "sizes": [int(counts[i]) for i in ids], "flops": flops, "full_flops": full,
                "warmup": [warm], "roles": len(counts)}
    counts = train.train.counts
    cohorts = round_cohorts(len(counts), args.cohort or 5, args.rounds)
    epochs = args.epochs
    flops = sum(epochs * 3 * int(counts[i]) * row_flops() for c in cohorts for i in c)
    warm = min((i for i in range(len(counts)) if int(counts[i]) >= BATCH), key=lambda i: int(counts[i]))
    return {"work": cohorts, "sizes": [sum(int(counts[i]) for i in c) for c in cohorts], "flops": flops,
            "role_sizes": [[int(counts[i]) for i in c] for c in cohorts], "warmup": [[warm]], "epochs": epochs,
            "cohort": args.cohort or 5}


def _measure(case: str, arm: str, p: dict, args, tmp: Path, tag: str) -> float:
    from pfl.bench.runner import _env

    kind, threads, procs = ARMS[arm]
    running = []
    for k in range(procs):
        part = p["work"] if procs == 1 else _split(p["work"], p["sizes"], procs, k)
        if case == "shakespeare_round" and procs > 1:  # each process trains its half of every cohort
            part = [_split(c, n, procs, k) for c, n in zip(p["work"], p["role_sizes"])]
        spec = {"case": case, "kind": kind, "threads": threads, "root": args.data_root, "part": part,
                "warmup": p["warmup"], "epochs": p.get("epochs", 1)}
        path = tmp / f"{tag}_{k}.json"
        path.write_text(json.dumps(spec))
        cmd = [sys.executable, "-m", "pfl.bench.shakespeare", "--worker", str(path)]
        running.append((subprocess.Popen(cmd, env=_env(threads), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True), path))
    seconds = []
    for proc, path in running:
        out, err = proc.communicate(timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"{NAMES[arm]} failed (exit {proc.returncode}):\n{err[-3000:]}")
        seconds.append(json.loads(out.strip().splitlines()[-1])["seconds"])
    return max(seconds)


def collect(cases: list[str], args) -> tuple[list[dict], dict]:
    arms = [a for a in (args.arms or "plain,pfl,plain2,pfl2").split(",") if a]
    bad = [a for a in arms if a not in ARMS]
    if bad:
        raise SystemExit(f"error: --arms {','.join(bad)} is not allowed: expected a comma-separated subset of "
                         f"{', '.join(ARMS)}")
    train, held = load(args.data_root)
    ceiling = {"matmul_2_threads": matmul_rate(2), "matmul_1_thread": matmul_rate(1)}
    rows, t0 = [], time.time()
    with tempfile.TemporaryDirectory(prefix="pfl_bench_sk_") as tmp:
        for case in cases:
            p = plan(case, args, train, held)
            times: dict = {a: [] for a in arms}
            for rep in range(args.repeats):
                for arm in arms:
                    times[arm].append(_measure(case, arm, p, args, Path(tmp), f"{case}_{arm}_{rep}"))
                    print(f"[{time.time() - t0:6.0f} s] {case} {NAMES[arm]}: {times[arm][-1]:.1f} s",
                          file=sys.stderr, flush=True)
            rows += _rows(case, arms, times, p, ceiling)
    return rows, {**ceiling, "data": "TFF Shakespeare" if args.data_root else "stand-in"}


def _plain_of(arm: str) -> str | None:
    """The plain arm with the same threads and processes as `arm`."""
    _, threads, procs = ARMS[arm]
    return next(a for a, (k, t, n) in ARMS.items() if k == "plain" and (t, n) == (threads, procs))


def _rows(case: str, arms: list[str], times: dict, p: dict, ceiling: dict) -> list[dict]:
    out = []
    for arm in arms:
        med = statistics.median(times[arm])
        ref = _plain_of(arm)
        ref = statistics.median(times[ref]) if ref in times else None
        row = {"case": case, "arm": NAMES[arm], "seconds": med, "all_seconds": times[arm],
               "ratio": None if ref is None else med / ref, "gflops": p["flops"] / med / 1e9}
        # the ceiling of the cores the arm uses: the 2-thread matmul, or 1-thread matmul x processes
        _, threads, procs = ARMS[arm]
        row["of_ceiling"] = row["gflops"] / (ceiling["matmul_2_threads"] if threads == 2 else
                                             procs * ceiling["matmul_1_thread"])
        if "full_flops" in p:
            row["projected_full_s"] = med * p["full_flops"] / p["flops"]
        out.append(row)
    return out


def markdown(rows: list[dict], info: dict) -> str:
    lines = [f"matmul 2048^2 float32: {info['matmul_2_threads']:.1f} GFLOP/s (2 threads), "
             f"{info['matmul_1_thread']:.1f} (1 thread); data: {info['data']}", "",
             "| case | arm | s (median) | ratio to plain, same threads | GFLOP/s | of matmul rate | all roles, projected |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}"
        full = f"{r['projected_full_s'] / 60:.1f} min" if "projected_full_s" in r else "—"
        lines.append(f"| {r['case']} | {r['arm']} | {r['seconds']:.1f} | {ratio} | {r['gflops']:.1f} | "
                     f"{100 * r['of_ceiling']:.0f}% | {full} |")
    return "\n".join(lines)


def main(cases: list[str], args) -> int:
    rows, info = collect(cases, args)
    print(markdown(rows, info))
    if args.json:
        from pfl.bench.runner import machine

        Path(args.json).write_text(json.dumps({"machine": machine(), "info": info, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--worker":
    from pfl.bench.shakespeare_arms import run

    print(json.dumps(run(json.loads(Path(sys.argv[2]).read_text()))))
