"""engine.chunk_size=auto / engine.eval_chunk_size=auto on CUDA: sizes chosen once per run from the
device's free memory, that fit in it, reused by every round and evaluation; a vmap split into chunks
gives the results of one vmap call over the whole cohort."""

import pytest
import torch

from pfl import chunking
from tests.gpu.common import CUDA, DEVICE, accuracies, max_difference, numbers, params, run, same_rows

pytestmark = CUDA
AUTO = ["engine.chunk_size=auto", "engine.eval_chunk_size=auto"]
BASE = ["algorithm=fedavg", f"device={DEVICE}", "engine.backend=vmap"]
SIZE = {"rounds": 3, "eval_every": 1, "checkpoint_every": 0}  # three rounds, three evaluations


def test_auto_sizes_fit_the_free_memory_and_are_chosen_once(tmp_path, monkeypatch):
    calls, real = [], chunking.auto_chunk

    def spy(local, params_, split, device, clients, what, test_split=None):
        per_client = chunking.client_bytes(local, params_, split, test_split)["total"]
        free = chunking.free_bytes(device)
        chunk = real(local, params_, split, device, clients, what, test_split)
        calls.append({"what": what, "chunk": chunk, "clients": clients, "per_client": per_client, "free": free,
                      "device": torch.device(device).type})
        return chunk

    monkeypatch.setattr(chunking, "auto_chunk", spy)
    if DEVICE == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    auto = run(tmp_path / "auto", *BASE, *AUTO, size=SIZE)
    assert sorted(c["what"] for c in calls) == ["engine.chunk_size", "engine.eval_chunk_size"], calls  # once each
    chosen = {c["what"]: c["chunk"] for c in calls}
    assert auto["engine"]["chunk_size"] == chosen["engine.chunk_size"]
    assert auto["engine"]["eval_chunk_size"] == chosen["engine.eval_chunk_size"]
    for c in calls:
        assert c["device"] == DEVICE and 1 <= c["chunk"] <= c["clients"], c
        if DEVICE == "cuda":
            assert c["free"] is not None and c["chunk"] * c["per_client"] <= c["free"], c  # the estimate fits
    if DEVICE == "cuda":  # what the run really held stayed within the memory that was free when it chose
        assert torch.cuda.max_memory_allocated() - before <= min(c["free"] for c in calls)
    fixed = run(tmp_path / "fixed", *BASE, f"engine.chunk_size={chosen['engine.chunk_size']}",
                f"engine.eval_chunk_size={chosen['engine.eval_chunk_size']}", size=SIZE)
    assert accuracies(auto) == pytest.approx(accuracies(fixed), rel=1e-6, abs=1e-6)
    same_rows(numbers(tmp_path / "auto"), numbers(tmp_path / "fixed"), 1e-6)


def test_chunked_vmap_equals_one_call_on_the_device(tmp_path, monkeypatch):
    real, seen = chunking.choose_chunk, []

    def room_for_two(per_client, free, clients, headroom=chunking.HEADROOM):
        seen.append(clients)
        return real(per_client, 4 * per_client + 1, clients, headroom)  # half of it: two clients

    monkeypatch.setattr(chunking, "choose_chunk", room_for_two)
    chunked = run(tmp_path / "chunked", *BASE, *AUTO, size=SIZE)
    assert chunked["engine"]["chunk_size"] == 2 and chunked["engine"]["eval_chunk_size"] == 2
    assert len(seen) == 2 and min(seen) > 2  # the cohort and the evaluated clients really were split
    whole = run(tmp_path / "whole", *BASE, "engine.chunk_size=null", "engine.eval_chunk_size=null", size=SIZE)
    assert accuracies(chunked) == pytest.approx(accuracies(whole), rel=1e-5, abs=1e-5)
    same_rows(numbers(tmp_path / "chunked"), numbers(tmp_path / "whole"), 1e-5)
    assert max_difference(params(tmp_path / "chunked"), params(tmp_path / "whole")) < 1e-5
