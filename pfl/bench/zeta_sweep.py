"""ζ sweep of AFML and its baselines (experiments/afml/README.md, "Measurements").

    python -m pfl.bench.zeta_sweep synthetic out.jsonl rounds=50 eval_every=10 \
        personalization.train_clients=0 personalization.local_baseline=true
    python -m pfl.bench.zeta_sweep femnist out.jsonl rounds=100 eval_every=10 client_opt.lr=0.1 \
        personalization.train_clients=0 personalization.target_accuracy=0.5 personalization.local_baseline=true \
        afml:algorithm.inner_lr=1.0 afml:algorithm.head_lr=1.0 afml:algorithm.encoder_lr=1.0
    python -m pfl.bench.zeta_sweep table out.jsonl

`<algorithm>:<override>` applies to that algorithm only; `--only=afml:0.5`
runs one cell; `--algorithms=fedprox,ditto` and `--zetas=0.1,0.9` pick the
grid (default: AFML's baselines, ζ ∈ {0.1, ..., 0.9}); a `seed=` override
goes into the run folder's name, and `seeds <file>` prints mean ± sd tables
over the seeds of a file (experiments/baselines/README.md).

Every (ζ, algorithm) cell is one `pfl.run.train` with the given overrides;
one JSON line per cell. `femnist` is `dataset=femnist_leaf` on the shared LEAF FEMNIST 5% sample
(../shared/data/leaf_femnist_niid05, or $PFL_SHARED_DATA; the 105 users with
train and test data, sorted: the first 80 train, the other 25 are held out)
with an MLP 784-128-62. ζ permutes the 62 labels of exactly round((1-ζ)·clients)
clients per population, and those clients augment (shifts of up to 2 pixels,
no flip: characters). Add personalization.local_cache=true (and set PFL_CACHE)
to share the local-only reference between cells.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


FEMNIST = Path(os.environ.get("PFL_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")) \
    / "leaf_femnist_niid05"
ALGORITHMS = ["fedavg_ft", "perfedavg", "apfl", "afml", "fedmeta"]
BASELINES = ["fedavg", "fedavg_ft", "fedprox", "scaffold", "ditto", "pfedme", "fedper", "fedrep", "fedbabu", "lg_fedavg",
             "fedbn", "fedala", "fedrod", "feddbe", "fedas", "gpfl", "knn_per", "fedproto", "pfedhn", "fedpac", "fedcp"]
ZETAS = [0.1, 0.3, 0.5, 0.7, 0.9]
# the shared LEAF FEMNIST sample through the library's loader: first 80 writers train, 25 held out,
# ink = 1 (dataset.invert), MLP 784-128-62; ζ-permuted clients shift their characters (CHARACTER_AUGMENT)
DATA = {"synthetic": [], "femnist": ["dataset=femnist_leaf", f"dataset.root={FEMNIST}", "dataset.invert=true",
                                     "model=mlp", "model.hidden=[128]"]}


def run_cell(data: str, alg: str, zeta: float, overrides: list[str], run_dir: Path) -> dict:
    from hydra import compose, initialize_config_dir
    from pfl.cli import CONF_DIR
    from pfl.config import register
    from pfl.run import train

    register()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[*DATA[data], f"algorithm={alg}", f"zeta={zeta}", *overrides])
    t = time.time()
    s = train(cfg, run_dir)
    return {"data": data, "alg": alg, "zeta": zeta, "seed": int(cfg.seed), "extra": overrides, "pers": s["personalized_accuracy"],
            "init": s["initial_accuracy"], "rtt": s["rounds_to_target"], "bytes": s["bytes"], "flops": s["flops_per_round"],
            "lb": s["local_baseline"], "wall": round(time.time() - t, 1), "curve": s["personalization_curve"],
            "train": s.get("train_clients")}


def table(path: str) -> str:
    rows = [json.loads(line[7:] if line.startswith("RESULT ") else line) for line in open(path) if "{" in line]
    by = {(r["alg"], r["zeta"]): r for r in rows}
    zetas = sorted({r["zeta"] for r in rows})
    algs = [a for a in ALGORITHMS + BASELINES if any(r["alg"] == a for r in rows)]
    algs = list(dict.fromkeys(algs))
    head = "| algorithm | " + " | ".join(f"ζ={z}" for z in zetas) + " |\n|---|" + "---|" * len(zetas)

    def grid(title, fmt):
        lines = [f"\n{title}\n", head]
        for a in algs:
            lines.append(f"| {a} | " + " | ".join(fmt(by[(a, z)]) if (a, z) in by else "—" for z in zetas) + " |")
        return lines

    out = grid("Pers.5 held-out accuracy:", lambda r: f"{r['pers']['5']:.3f}")
    lb = {z: next((r["lb"]["local_accuracy"] for r in rows if r["zeta"] == z and r["lb"]), None) for z in zetas}
    out.append("| local-only (Acc_local) | " + " | ".join("—" if lb[z] is None else f"{lb[z]:.3f}" for z in zetas) + " |")
    out += grid("Pers.1 / initial accuracy:", lambda r: f"{r['pers']['1']:.3f} / {r['init']:.3f}")
    out += grid("Fraction of held-out clients beating Acc_local after 5 epochs:",
                lambda r: "—" if not r["lb"] else f"{r['lb']['beats_local_fraction']['5']:.2f}")
    out += grid("Rounds to the target (Pers.5 ≥ target; — never within the run):",
                lambda r: str(r["rtt"].get("personalized_5") or "—"))
    out += ["\nCost per round (the same at every ζ) and wall time per run:\n",
            "| algorithm | bytes down / round | bytes up / round | FLOPs of the first round (cohort) | wall s, ζ=" +
            ", ".join(str(z) for z in zetas) + " |", "|---|---|---|---|---|"]
    for a in algs:
        rs = [by.get((a, z)) for z in zetas]
        r = next(x for x in rs if x)
        out.append(f"| {a} | {r['bytes']['down_per_round']:,.0f} | {r['bytes']['up_per_round']:,.0f} | "
                   f"{list(r['flops'].values())[0]:.3g} | " + ", ".join("—" if x is None else f"{x['wall']:.0f}" for x in rs) + " |")
    return "\n".join(out)


def seeds_table(path: str) -> str:
    """Mean ± sd over seeds of Pers.1, Pers.5 and the initial accuracy, per (algorithm, ζ)."""
    import statistics

    rows = [json.loads(line) for line in open(path) if line.startswith("{")]
    zetas = sorted({r["zeta"] for r in rows})
    algs = list(dict.fromkeys(a for a in ALGORITHMS + BASELINES if any(r["alg"] == a for r in rows)))
    out = []
    tables = [("Pers.5 held-out", lambda r: r["pers"]["5"]), ("Pers.1 held-out", lambda r: r["pers"]["1"]),
              ("initial held-out", lambda r: r["init"])]
    if all(r.get("train") for r in rows):  # the sample of training clients, with their own per-client state
        tables += [("Pers.5 training-client", lambda r: r["train"]["personalized_accuracy"]["5"]),
                   ("initial (k = 0) training-client", lambda r: r["train"]["initial_accuracy"])]
    for title, get in tables:
        out += [f"\n{title} accuracy, mean ± sd over seeds (n = seeds run):\n",
                "| algorithm | " + " | ".join(f"ζ={z}" for z in zetas) + " |", "|---|" + "---|" * len(zetas)]
        for a in algs:
            cells = []
            for z in zetas:
                v = [get(r) for r in rows if r["alg"] == a and r["zeta"] == z]
                sd = statistics.stdev(v) if len(v) > 1 else 0.0
                cells.append("—" if not v else f"{statistics.mean(v):.3f} ± {sd:.3f} (n={len(v)})")
            out.append(f"| {a} | " + " | ".join(cells) + " |")
    out += ["\nBytes per round (cohort) and mean wall time per run:\n",
            "| algorithm | bytes down / round | bytes up / round | wall s (mean) |", "|---|---|---|---|"]
    for a in algs:
        rs = [r for r in rows if r["alg"] == a]
        out.append(f"| {a} | {rs[0]['bytes']['down_per_round']:,.0f} | {rs[0]['bytes']['up_per_round']:,.0f} | "
                   f"{statistics.mean(r['wall'] for r in rs):.0f} |")
    return "\n".join(out)


def main(argv: list[str]) -> None:
    if argv[0] == "table":
        print(table(argv[1]))
        return
    if argv[0] == "seeds":
        print(seeds_table(argv[1]))
        return
    data, out, overrides = argv[0], Path(argv[1]), argv[2:]
    runs = out.with_suffix("")
    only = [a.split("=", 1)[1] for a in overrides if a.startswith("--only=")]  # e.g. --only=afml:0.5
    algorithms = next((a.split("=", 1)[1].split(",") for a in overrides if a.startswith("--algorithms=")), ALGORITHMS)
    zetas = next(([float(z) for z in a.split("=", 1)[1].split(",")] for a in overrides if a.startswith("--zetas=")),
                 ZETAS)
    overrides = [a for a in overrides if not a.startswith(("--only=", "--algorithms=", "--zetas="))]
    seed = next((a.split("=", 1)[1] for a in overrides if a.startswith("seed=")), None)
    for zeta in zetas:
        for alg in algorithms:
            if only and f"{alg}:{zeta}" not in only:
                continue
            # "afml:algorithm.inner_lr=1.0" applies to one algorithm only
            mine = [o.split(":", 1)[1] if ":" in o.split("=", 1)[0] else o for o in overrides
                    if ":" not in o.split("=", 1)[0] or o.startswith(alg + ":")]
            row = run_cell(data, alg, zeta, mine, runs / (f"{alg}_{zeta}" + (f"_s{seed}" if seed is not None else "")))
            with open(out, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{alg} ζ={zeta}: Pers.5 {row['pers']['5']:.3f} ({row['wall']} s)", flush=True)
    print(table(str(out)))


if __name__ == "__main__":
    main(sys.argv[1:])
