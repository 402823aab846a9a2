"""The benchmark's machinery: arms, fresh worker processes, interleaved repeats, the table.

`collect` runs a plan and returns the table rows (see pfl.bench.__main__ for what is measured).
"""


from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pfl.bench.cases import CASES, sized

ALL_CASES = ("peers", "default", "lstm", "eval", "population", "startup")
REFERENCE = "plain 2 threads"


def _arms(case: str, backends: list[str], devices: list[int], device: str, plain: bool = True,
          thread_arms: bool = True) -> list[dict]:
    if case == "startup":
        return [{"arm": "python -m pfl rounds=1", "kind": "cli", "threads": 2, "devices": 1}]
    arms = [{"arm": REFERENCE, "kind": "plain", "threads": 2, "devices": 1}] if plain else []
    thread_arms = thread_arms and device == "cpu" and plain  # the plain loop's thread comparisons (a CPU's)
    if 1 in devices and thread_arms:
        arms.append({"arm": "plain 1 thread", "kind": "plain", "threads": 1, "devices": 1})
    if 2 in devices and thread_arms:
        arms.append({"arm": "plain 2 x 1 thread", "kind": "plain", "threads": 1, "devices": 2})
    for d in devices:
        if d > 1 and device != "cpu":
            continue  # one accelerator here
        for b in backends:
            arms.append({"arm": f"pfl {b}" + (f", devices={d}" if d > 1 else ""), "kind": "engine", "backend": b,
                         "threads": 2 if d == 1 else 1, "devices": d})
    return arms


def with_other_checkout(arms: list[dict], src: str) -> list[dict]:
    """`--compare-src DIR`: every engine arm once more, run with the pfl of another checkout (before a change)."""
    name = Path(src).name
    return arms + [{**a, "arm": f"{a['arm']} [{name}]", "src": str(Path(src).resolve())} for a in arms
                   if a["kind"] == "engine"]


def _env(threads: int, src: str | None = None) -> dict:
    src = src or str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), WANDB_MODE="disabled",
                TQDM_DISABLE="1", PYTHONPATH=src + (os.pathsep + path if path else ""))


def _worker(spec: dict, tmp: Path, tag: str) -> subprocess.Popen:
    (tmp / f"{tag}.spec.json").write_text(json.dumps(spec))
    cmd = [sys.executable, "-m", "pfl.bench", "--worker", str(tmp / f"{tag}.spec.json"), "--out", str(tmp / f"{tag}.json")]
    return subprocess.Popen(cmd, env=_env(spec["threads"], spec.get("src")), cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _wait(proc: subprocess.Popen, what: str) -> None:
    _, err = proc.communicate(timeout=1200)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{err[-3000:]}")


def measure(arm: dict, case: dict, args, tmp: Path, tag: str) -> dict:
    """One fresh measurement of one arm: per-round times and memory."""
    spec = {**arm, "case": case, "rounds": args.rounds, "warmup": args.warmup, "device": args.device, "seed": 0}
    if arm["kind"] == "cli":
        return _startup(tmp, tag)
    if arm["kind"] == "plain" and arm["devices"] > 1:  # w processes at once, each its block of every cohort
        w = arm["devices"]
        procs = [_worker({**spec, "shard": [k, w]}, tmp, f"{tag}_{k}") for k in range(w)]
        for p in procs:
            _wait(p, arm["arm"])
        parts = [json.loads((tmp / f"{tag}_{k}.json").read_text()) for k in range(w)]
        out = dict(parts[0])
        out["times"] = [max(ts) for ts in zip(*(p["times"] for p in parts))]  # a round ends with its slower half
        for key in ("peak_rss_mb", "round_peak_mb", "import_mb"):
            out[key] = max(p[key] for p in parts)
        return out
    _wait(_worker(spec, tmp, tag), arm["arm"])
    return json.loads((tmp / f"{tag}.json").read_text())


def _startup(tmp: Path, tag: str) -> dict:
    out = tmp / f"{tag}.json"
    t0 = time.time()
    cb = f"callbacks=[{{_target_:pfl.bench.engine.RoundTimer,out:'{out}',warmup:0,total:1,t0:{t0}}}]"
    cmd = [sys.executable, "-m", "pfl", "rounds=1", f"hydra.run.dir={tmp / tag}", cb, "trainer.enable_progress_bar=false"]
    proc = subprocess.run(cmd, env=_env(2), cwd=tmp, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"python -m pfl rounds=1 failed:\n{proc.stderr[-3000:]}")
    res = json.loads(out.read_text())
    # "times": launch -> first round's start (the start-up); the whole run's wall time beside it
    return {**res, "times": [res["first_round_s"]], "wall_s": time.time() - t0}


def summarize(rows: dict, order: list) -> list[dict]:
    """Per arm: median/min/max over repeats of the per-repeat median round; ratio to the same case's reference."""
    table = []
    for key in order:
        reps = rows[key]
        med = [statistics.median(r["times"]) for r in reps]
        row = {**{k: v for k, v in reps[0]["_arm"].items()}, "case": key[0], "device": reps[0]["_device"],
               "median_s": statistics.median(med), "min_s": min(med), "max_s": max(med), "repeat_medians_s": med,
               "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in reps),
               "round_peak_mb": statistics.median(r["round_peak_mb"] for r in reps),
               "import_mb": statistics.median(r["import_mb"] for r in reps),
               "auto": reps[0].get("auto"), "threads_seen": reps[0].get("threads")}
        if "cuda_peak_mb" in reps[0]:
            row["cuda_peak_mb"] = statistics.median(r["cuda_peak_mb"] for r in reps)
        if "wall_s" in reps[0]:
            row["wall_s"] = statistics.median(r["wall_s"] for r in reps)
        table.append(row)
    for row in table:
        ref = next((r for r in table if r["case"] == row["case"] and r["arm"] == REFERENCE), None)
        row["ratio"] = None if ref is None else row["median_s"] / ref["median_s"]
        if ref is not None:  # paired repeats (measured next to each other)
            pairs = [a / b for a, b in zip(row["repeat_medians_s"], ref["repeat_medians_s"])]
            row["ratio_min"], row["ratio_max"] = min(pairs), max(pairs)
    return table


def markdown(table: list[dict]) -> str:
    lines = ["| case | arm | s/round median (min–max) | ratio to plain 2 threads | peak RSS MB | round peak MB | auto chose |",
             "|---|---|---|---|---|---|---|"]
    for r in table:
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f} ({r['ratio_min']:.2f}–{r['ratio_max']:.2f})"
        mem = f"{r['cuda_peak_mb']:.0f} (CUDA)" if "cuda_peak_mb" in r else f"{r['peak_rss_mb']:.0f}"
        lines.append(f"| {r['case']} | {r['arm']} | {r['median_s']:.3f} ({r['min_s']:.3f}–{r['max_s']:.3f}) | {ratio} | "
                     f"{mem} | {r['round_peak_mb']:.0f} | {r.get('auto') or '—'} |")
    return "\n".join(lines)


def collect(cases: list[str], backends: list[str], devices: list[int], args, sizes: dict | None = None,
            plain: bool = True, thread_arms: bool = True):
    """(table, measurements) of every arm of `cases`, `args.repeats` interleaved repeats.
    `sizes`: per case, size overrides (pfl.bench.cases.sized), else those of `args`;
    `plain=False`: the engine arms only (no reference, no ratio); `thread_arms=False`: on a CPU, not the
    plain loop's 1-thread arms either (the arms of a GPU run only)."""
    plan = []
    for name in cases:
        case = CASES.get(name, CASES["default"])
        over = (sizes or {}).get(name) or dict(clients=args.clients, examples=args.examples, cohort=args.cohort,
                                               heldout=args.heldout)
        case = sized(case, **over).as_dict()
        arms = _arms(name, backends, devices, args.device, plain, thread_arms)
        if getattr(args, "compare_src", None):
            arms = with_other_checkout(arms, args.compare_src)
        plan += [((name, a["arm"]), a, case) for a in arms]
    rows: dict = {key: [] for key, _, _ in plan}
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="pfl_bench_") as tmp:
        for rep in range(args.repeats):  # interleaved: every arm once, then again
            for i, (key, arm, case) in enumerate(plan):
                res = measure(arm, case, args, Path(tmp), f"r{rep}_{i}")
                rows[key].append({**res, "_arm": arm, "_device": args.device})
                print(f"[{time.time() - t_start:6.0f} s] repeat {rep + 1}/{args.repeats} {key[0]:<10} {key[1]:<26} "
                      f"{statistics.median(res['times']):.3f} s/round", file=sys.stderr, flush=True)
    return summarize(rows, [key for key, _, _ in plan]), rows


def machine() -> dict:
    import torch

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "load_avg": load,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def write_json(path: str, args, table: list[dict], rows: dict, seconds: float, **extra) -> None:
    doc = {"machine": machine(), "args": {k: v for k, v in vars(args).items() if k not in ("worker", "out")},
           "reference": REFERENCE, "seconds": seconds, "rows": table, **extra,
           "measurements": {f"{k[0]} | {k[1]}": [{kk: vv for kk, vv in r.items() if not kk.startswith("_")}
                                                 for r in v] for k, v in rows.items()}}
    Path(path).write_text(json.dumps(doc, indent=2))


def run_worker(spec_path: str, out: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    import torch

    torch.set_num_threads(spec["threads"])
    if spec["kind"] == "plain":
        from pfl.bench import plain

        Path(out).write_text(json.dumps(plain.run(spec)))
    else:
        from pfl.bench import engine

        engine.run(spec, out)
    return 0
