"""The GPU check's CPU side: the wheel list of `tools/gpu_check.sh prepare`, the plan of its `run` half,
and how `python -m pfl.bench.gpu` turns measurements into the targets table (fabricated measurements:
the arithmetic, not the GPU). The whole run half on a CPU (`run --cpu`) is the slow test at the end."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

sys.path.insert(0, str(REPO / "tools"))
import gpu_wheels  # noqa: E402

SCRIPT = str(REPO / "tools" / "gpu_check.sh")


def test_the_wheels_are_exactly_what_the_image_lacks():
    modules = ["hydra", "omegaconf", "antlr4", "torch", "pytorch_lightning", "yaml", "numpy", "json", "pfl", "_io"]
    dists = gpu_wheels.imported_distributions(modules)
    assert {"hydra-core", "omegaconf", "antlr4-python3-runtime", "torch", "PyYAML"} <= dists  # the installed owners
    assert not {"json", "pfl", "_io"} & dists  # the standard library and the project itself travel otherwise
    assert gpu_wheels.missing(dists) == ["antlr4-python3-runtime", "hydra-core", "omegaconf"]
    assert gpu_wheels.missing({"Hydra_Core", "pytorch.lightning"}) == ["hydra-core"]  # names compare normalized


def _plan(*args):
    env = dict(os.environ, PYTHON=sys.executable, GPU_WHEELS="no-such-folder")
    return subprocess.run(["bash", SCRIPT, "run", "--dry-run", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def test_run_half_plans_every_step_within_the_budget(tmp_path):
    gpu, cpu = _plan(str(tmp_path / "gpu")), _plan("--cpu", str(tmp_path / "cpu"))
    assert gpu.returncode == 0 and cpu.returncode == 0, gpu.stderr + cpu.stderr
    steps = [line.split(" (")[0] for line in gpu.stdout.splitlines() if "(limit" in line]
    assert steps == ["== environment", "== cuda-tests", "== bench"]
    limits = [int(line.split("(limit ")[1].split(" s")[0]) for line in gpu.stdout.splitlines() if "(limit" in line]
    assert all(0 < t <= 470 for t in limits)
    assert "-n 8 --dist load -m cuda tests/gpu tests/engine/test_accelerator.py" in gpu.stdout
    assert "bench --repeats 2" in gpu.stdout
    assert "-n 0 -m cuda tests/gpu" in cpu.stdout and "bench --device cpu --tiny" in cpu.stdout
    assert os.listdir(tmp_path / "gpu") == ["check.log"]  # a dry run writes its plan only
    bad = subprocess.run(["bash", SCRIPT, "run", "--fast"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert bad.returncode != 0 and "unknown option --fast (allowed: --cpu, --dry-run)" in bad.stdout + bad.stderr


def _table(arms: dict, case: str):
    """A pfl.bench.runner.collect result: (rows, measurements) with the given {arm: median s}."""
    rows = [{"arm": a, "case": case, "median_s": s, "min_s": s, "max_s": s, "ratio": None, "peak_rss_mb": 1.0,
             "round_peak_mb": 1.0, "kind": "plain" if a.startswith("plain") else "engine"} for a, s in arms.items()]
    return rows, {(case, a): [{"times": [s], "gpu_util_mean": 50.0 + i}] for i, (a, s) in enumerate(arms.items())}


def _args(**kw):
    from pfl.bench import gpu

    return gpu.parse([f"--{k.replace('_', '-')}={v}" for k, v in kw.items()])


def test_targets_from_measurements():
    from pfl.bench import gpu

    out = {"peers": _table({"plain 2 threads": 2.0, "pfl vmap": 0.1, "pfl sequential": 1.5}, "peers"),
           "eval": _table({"pfl vmap": 4.0}, "eval"), "eval_plain": _table({"plain 2 threads": 3.0}, "eval"),
           "replicas": {"times": [0.3, 0.5, 0.4], "median_s": 0.4, "gpu_util_mean": 91.0}}
    t = {x["target"].split(" ")[0]: x for x in gpu.targets(out, {}, _args())}
    assert t["vmap"]["value"] == pytest.approx(20.0) and t["vmap"]["met"] is True
    assert t["900"]["value"] == 4.0 and t["900"]["met"] is True
    assert "plain loop 30.0 s (measured on 90 clients x 10)" in t["900"]["measured"]
    assert t["Table"]["value"] == pytest.approx(8 * (500 * 0.4 + 9 * 4.0) / 3600) and t["Table"]["met"] is True
    assert t["GPU"]["value"] == 51.0 and "replicas=9 91%" in t["GPU"]["measured"]
    del out["replicas"]  # without the replicas arm: 72 separate runs of the vmap round
    t = {x["target"].split(" ")[0]: x for x in gpu.targets(out, {}, _args())}
    assert t["Table"]["value"] == pytest.approx(72 * (500 * 0.1 + 4.0) / 3600) and t["Table"]["met"] is False


def test_a_failed_step_is_reported_and_the_others_still_run(monkeypatch, tmp_path, capsys):
    import torch

    from pfl.bench import gpu, runner

    def fake_collect(cases, backends, devices, args, sizes=None, plain=True, thread_arms=True):
        if cases == ["peers"]:
            raise RuntimeError("pfl vmap failed (exit 1):\nCUDA error: out of memory")
        arm = "pfl vmap" if backends else "plain 2 threads"
        return _table({arm: 2.0}, cases[0])

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU")
    monkeypatch.setattr(runner, "collect", fake_collect)
    monkeypatch.setattr(gpu, "_replicas_arm", lambda args, bench, case: {"times": [0.2], "median_s": 0.2})
    assert gpu.main(["--json", str(tmp_path / "gpu.json")]) == 1
    doc = json.loads((tmp_path / "gpu.json").read_text())
    assert doc["errors"] == {"peers": "CUDA error: out of memory"}
    assert doc["steps_done"] == ["peers", "eval", "eval_plain", "replicas"]
    by = {x["target"].split(" ")[0]: x for x in doc["targets"]}
    assert by["vmap"]["met"] is None and "not measured (peers: CUDA error: out of memory)" in by["vmap"]["measured"]
    assert by["Table"]["value"] == pytest.approx(8 * (500 * 0.2 + 9 * 2.0) / 3600)
    printed = capsys.readouterr().out
    assert "| 900 held-out clients x 5 personalization epochs | 2.00 s; plain loop 20.0 s" in printed
    assert "(Fake GPU;" in printed


def test_bad_device_one_line():
    from pfl.bench import gpu

    with pytest.raises(SystemExit) as exc:
        gpu.parse(["--device", "tpu"])
    assert exc.value.code == 2


@pytest.mark.slow  # seven fresh processes (torch, Lightning) and the CUDA tests' collection: minutes on 2 cores
def test_run_half_on_a_cpu_end_to_end(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, GPU_WHEELS="no-such-folder", OMP_NUM_THREADS="1")
    done = subprocess.run(["bash", SCRIPT, "run", "--cpu", str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:]
    files = sorted(os.listdir(tmp_path))
    assert files == ["bench.log", "check.log", "env.txt", "gpu.json", "pytest.log"]  # at most 8 come back
    assert "skipped" in (tmp_path / "pytest.log").read_text()
    assert "pfl imports from" in (tmp_path / "env.txt").read_text()
    doc = json.loads((tmp_path / "gpu.json").read_text())
    assert doc["errors"] == {} and len(doc["targets"]) == 4
    assert all(t["value"] is not None for t in doc["targets"][:3]), doc["targets"]
