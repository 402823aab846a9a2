"""`python -m pfl.bench` end to end on its smallest case, and `python -m pfl.bench.gpu` without a GPU."""

import json
import os
import statistics
import subprocess
import sys

import pytest

from tests.helpers import REPO


@pytest.mark.slow  # three fresh processes (torch, Lightning): ~15 s on an idle 2-core machine
def test_smallest_case_end_to_end_json(tmp_path):
    out = tmp_path / "out.json"
    cmd = [sys.executable, "-m", "pfl.bench", "--case", "default", "--devices", "1", "--repeats", "1", "--rounds", "1",
           "--warmup", "0", "--clients", "4", "--cohort", "2", "--heldout", "2", "--json", str(out)]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=1200,
                          env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| default | pfl auto |" in done.stdout  # the Markdown table
    doc = json.loads(out.read_text())
    assert doc["reference"] == "plain 2 threads" and doc["machine"]["cpus"] >= 1
    rows = {r["arm"]: r for r in doc["rows"]}
    assert set(rows) == {"plain 2 threads", "plain 1 thread", "pfl auto"}
    for r in rows.values():
        for key in ("median_s", "min_s", "max_s", "ratio", "peak_rss_mb", "round_peak_mb"):
            assert isinstance(r[key], float) and r[key] > 0, (r["arm"], key)
        # the median is over this invocation's own measurements
        reps = doc["measurements"][f"default | {r['arm']}"]
        assert r["median_s"] == statistics.median(statistics.median(m["times"]) for m in reps)
    ref = rows["plain 2 threads"]
    assert ref["ratio"] == 1.0
    assert rows["pfl auto"]["ratio"] == pytest.approx(rows["pfl auto"]["median_s"] / ref["median_s"])
    assert rows["pfl auto"]["auto"] == "vmap"  # an MLP on a CPU


def test_gpu_check_without_cuda_says_so_and_exits_0(monkeypatch, capsys):
    import torch

    from pfl.bench import gpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main([]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("no CUDA device")
