"""Seconds per communication round and peak memory, per engine backend.

    python -m pfl.bench.engine_round [--device cpu|cuda] [--rounds 5] [--case emnist|synthetic|all]

Cases:
- emnist:    TFF's EMNIST CNN (conv 32, conv 64, max-pool, dense 128, dense 62;
             28x28 inputs), 20 clients x 10 local steps x batch 20 (Reptile(10)).
- synthetic: the default data set's cohort (10 clients, FedAvg E=1, batch 20) with
             its default model (MLP 60-64-10).

Each (case, backend) runs in a fresh subprocess so peak memory is its own
(CPU: peak resident set size of the process; CUDA: torch's peak allocated).
Prints one table row per run and what `engine.backend=auto` picks.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch


def _setup(case: str, device: torch.device):
    from pfl.algorithms import FedAvg, Reptile
    from pfl.algorithms.local import LocalTrainer
    from pfl.data.federated import Population
    from pfl.optim import ClientSGD
    from pfl.task import Task

    torch.manual_seed(0)
    if case == "emnist":
        from pfl.models.cnn import EmnistCNN

        model = EmnistCNN(62)
        xs = [torch.rand(200, 28, 28) for _ in range(20)]
        ys = [torch.randint(0, 62, (200,)) for _ in range(20)]
        alg = Reptile(local_steps=10)
    else:
        from pfl.data.synthetic import load_synthetic
        from pfl.models.mlp import MLP

        data = load_synthetic(seed=0)
        pop = data.train
        ids = torch.randperm(len(pop), generator=torch.Generator().manual_seed(0))[:10]
        sub = pop.subset(ids.tolist())
        model = MLP(60, 10, [64])
        xs = [sub.train.gather(torch.tensor([i])).x[0, : sub.train.counts[i]] for i in range(10)]
        ys = [sub.train.gather(torch.tensor([i])).y[0, : sub.train.counts[i]] for i in range(10)]
        alg = FedAvg(local_epochs=1)
    pop = Population.from_clients([str(i) for i in range(len(xs))], xs, ys, xs, ys).to(device)
    model = model.to(device)
    task = Task(model)
    local = LocalTrainer(task, ClientSGD(lr=0.02, batch_size=20))
    data = pop.train.gather(torch.arange(len(xs), device=device))
    return model, task, local, alg, data


def _worker(case: str, backend: str, device: str, rounds: int) -> dict:
    from pfl import rng
    from pfl.engine.round import Server, cohort_keys, run_round
    from pfl.execution import make_backend

    dev = torch.device(device)
    model, task, local, alg, data = _setup(case, dev)
    params = {k: torch.nn.Parameter(v) for k, v in task.init_params().items()}
    server = Server(params, torch.optim.SGD(params.values(), lr=1.0))
    runner = make_backend(backend, model, dev)
    keys = cohort_keys(0, 0, torch.arange(len(data.n))).to(dev)

    def one_round():
        out = run_round(alg, local, runner, server, data, keys, rng.key(0, 0, 1).to(dev))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return out

    one_round()  # warm-up
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        one_round()
        times.append(time.perf_counter() - t)
    peak = (torch.cuda.max_memory_allocated() if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"case": case, "backend": backend, "device": device, "median_s": statistics.median(times),
            "min_s": min(times), "rounds": rounds, "peak_mb": peak / 2**20,
            "auto_picks": make_backend("auto", model, dev).kind, "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--case", default="all", choices=["all", "emnist", "synthetic"])
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument("--worker", nargs=2, metavar=("CASE", "BACKEND"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(*args.worker, args.device, args.rounds)))
        return
    rows = []
    cases = ["emnist", "synthetic"] if args.case == "all" else [args.case]
    print(f"{'case':<10}{'backend':<12}{'device':<8}{'median s/round':>15}{'peak MB':>10}  auto picks")
    for case in cases:
        for backend in ("vmap", "sequential"):
            cmd = [sys.executable, "-m", "pfl.bench.engine_round", "--worker", case, backend,
                   "--device", args.device, "--rounds", str(args.rounds)]
            row = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
            rows.append(row)
            print(f"{case:<10}{backend:<12}{row['device']:<8}{row['median_s']:>15.4f}{row['peak_mb']:>10.0f}  {row['auto_picks']}")
        pair = {r["backend"]: r["median_s"] for r in rows if r["case"] == case}
        auto = rows[-1]["auto_picks"]
        best = min(pair.values())
        print(f"  -> auto={auto}: {pair[auto] / best:.2f}x the faster backend's time")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
