"""Accelerator readiness: chunk sizes from free memory, mixed precision in the client step, torch.compile
with an eager fallback. CPU-side logic runs everywhere; CUDA paths skip without a GPU."""

import logging

import pytest
import torch

from pfl import chunking
from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import Population
from pfl.execution import Backend
from pfl.models.mlp import MLP
from pfl.optim import ClientAdam, ClientSGD
from pfl.task import Task
from tests.helpers.engine import cohort

_NO_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def CUDA(test):
    """Marked `cuda` (pytest -m cuda, tools/gpu_check.sh) and skipped without a GPU."""
    return pytest.mark.cuda(_NO_GPU(test))


def _split(sizes=(6, 9, 4), dim=5, classes=3):
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(n, dim, generator=g) for n in sizes]
    ys = [torch.randint(0, classes, (n,), generator=g) for n in sizes]
    return Population.from_clients([str(i) for i in range(len(sizes))], xs, ys, xs, ys).train


def test_choose_chunk_from_a_given_free_memory():
    assert chunking.choose_chunk(100, 1000, clients=50) == 5  # half of 1000 bytes, 100 bytes per client
    assert chunking.choose_chunk(100, 1000, clients=3) == 3  # never more than the clients
    assert chunking.choose_chunk(100, 10, clients=50) == 1  # at least one
    assert chunking.choose_chunk(100, None, clients=50) == 50  # unknown free memory: the whole cohort
    assert chunking.choose_chunk(100, 1000, clients=50, headroom=1.0) == 10


def test_client_estimate_counts_parameter_copies_activations_and_data():
    task = Task(MLP(5, 3, [8]))
    params = task.init_params()
    p = sum(v.numel() * 4 for v in params.values())
    split = _split()
    sgd = chunking.client_bytes(LocalTrainer(task, ClientSGD(lr=0.1, batch_size=4)), params, split)
    adam = chunking.client_bytes(LocalTrainer(task, ClientAdam(lr=0.1, batch_size=4)), params, split)
    assert sgd["parameters"] == 3 * p  # params, gradient, next params; SGD keeps no state
    assert 5 * p <= adam["parameters"] <= 5 * p + 64  # Adam's two moments (and a step counter)
    assert sgd["data"] == 9 * (5 * 4 + 8)  # the largest client's 9 examples: 5 floats and an int64 label
    big = chunking.client_bytes(LocalTrainer(task, ClientSGD(lr=0.1, batch_size=8)), params, split)
    assert 0 < sgd["activations"] < big["activations"]  # saved activations grow with the minibatch
    assert sgd["total"] == sgd["parameters"] + sgd["activations"] + sgd["data"]


def test_cpu_free_memory_is_the_available_ram():
    free = chunking.free_bytes("cpu")
    assert free is None or free > 0


def test_auto_chunk_size_reaches_the_run(tmp_path, monkeypatch):
    from pfl.run import train
    from tests.helpers import compose_cfg

    seen = {}
    real = chunking.choose_chunk

    def spy(per_client, free, clients, headroom=chunking.HEADROOM):
        seen.setdefault("per_client", per_client)
        return real(per_client, 4 * per_client + 1, clients, headroom)  # room for 2 clients

    monkeypatch.setattr(chunking, "choose_chunk", spy)
    args = ["rounds=2", "eval_every=2", "checkpoint_every=0", "personalization.curve_epochs=1",
            "personalization.epochs=[1]", "personalization.train_clients=3", "engine.backend=vmap"]
    out = train(compose_cfg(args + ["engine.chunk_size=auto", "engine.eval_chunk_size=auto"]), tmp_path)
    assert out["engine"]["chunk_size"] == 2 and out["engine"]["eval_chunk_size"] == 2 and seen["per_client"] > 0


def test_bf16_autocast_on_cpu_is_close_to_float32():
    torch.manual_seed(0)
    model = MLP(5, 3, [16])
    exact, mixed = Task(model), Task(model, precision="bf16-mixed")
    params = exact.init_params()
    data = cohort([6, 9, 4])
    logits = mixed.logits(params, data.x[1])
    assert logits.dtype == torch.float32
    assert torch.allclose(logits, exact.logits(params, data.x[1]), atol=3e-2, rtol=3e-2)
    keys = torch.arange(3)

    def deltas(task):
        local = LocalTrainer(task, ClientSGD(lr=0.1, batch_size=4))

        def fn(shared, d, k, st, loop):
            new, _ = local.using(loop).train(shared, d, k, 5)
            return {n: shared[n] - new[n] for n in new}

        return Backend("vmap").map(fn, params, data, keys)

    a, b = deltas(exact), deltas(mixed)
    for k in a:
        assert b[k].dtype == torch.float32
        assert torch.allclose(a[k], b[k], atol=2e-2, rtol=5e-2), k
        assert not torch.equal(a[k], b[k]) or k.endswith("bias")  # the autocast did act


@pytest.mark.parametrize("override, words", [
    ("trainer.precision=bf16-true", "trainer.precision='bf16-true' is not allowed: expected null, 32-true, bf16-mixed"),
    ("engine.chunk_size=0", "engine.chunk_size=0 is not allowed: expected null, auto or an integer >= 1"),
    ("engine.eval_chunk_size=big", "engine.eval_chunk_size='big' is not allowed"),
    ("engine.matmul_precision=tf32", "engine.matmul_precision='tf32' is not allowed: expected highest or high or medium"),
])
def test_bad_accelerator_settings_one_line(override, words):
    from pfl.config import validate
    from pfl.config.errors import ConfigError
    from tests.helpers import compose_cfg

    with pytest.raises(ConfigError) as exc:
        validate(compose_cfg([override]))
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch, caplog):
    import pfl.execution as ex

    def broken(fn, *a, **kw):
        raise RuntimeError("no compiler here\nmore detail")

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(ex, "_COMPILE_FAILED", [])
    task = Task(MLP(5, 3, [8]))
    params = task.init_params()
    local = LocalTrainer(task, ClientSGD(lr=0.1, batch_size=4))
    data, keys = cohort([6, 9, 4]), torch.arange(3)

    def fn(shared, d, k, st, loop):
        return local.using(loop).train(shared, d, k, 3)[0]

    with caplog.at_level(logging.WARNING, logger="pfl"):
        first = Backend("vmap", compile=True).map(fn, params, data, keys)
        again = Backend("vmap", compile=True).map(fn, params, data, keys)
    eager = Backend("vmap").map(fn, params, data, keys)
    warnings = [r for r in caplog.records if "engine.compile=true" in r.getMessage()]
    assert len(warnings) == 1 and "no compiler here" in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()
    for k in eager:
        assert torch.equal(first[k], eager[k]) and torch.equal(again[k], eager[k])


# -- CUDA (skipped without a GPU) ------------------------------------------------------------

@CUDA
def test_cuda_free_memory_and_auto_chunk_bound_a_big_cohort():
    free = chunking.free_bytes("cuda")
    assert 0 < free <= torch.cuda.get_device_properties(0).total_memory
    task = Task(MLP(5, 3, [8]))
    local = LocalTrainer(task, ClientSGD(lr=0.1, batch_size=4))
    chunk = chunking.auto_chunk(local, task.init_params(), _split(), "cuda", 10**9, "engine.chunk_size")
    assert 1 <= chunk < 10**9


@CUDA
def test_cuda_bf16_autocast_close_to_float32():
    model = MLP(5, 3, [16]).cuda()
    exact, mixed = Task(model), Task(model, precision="bf16-mixed")
    params = exact.init_params()
    x = torch.randn(7, 5, device="cuda")
    assert torch.allclose(mixed.logits(params, x), exact.logits(params, x), atol=3e-2, rtol=3e-2)


@CUDA
def test_cuda_compiled_chunk_equals_eager():
    task = Task(MLP(5, 3, [8]).cuda())
    task.buffers = {}
    params = {k: v.cuda() for k, v in task.init_params().items()}
    local = LocalTrainer(task, ClientSGD(lr=0.1, batch_size=4))
    d = cohort([6, 9, 4])
    data = type(d)(d.x.cuda(), d.y.cuda(), d.n.cuda())
    keys = torch.arange(3, device="cuda")

    def fn(shared, dd, k, st, loop):
        return local.using(loop).train(shared, dd, k, 3)[0]

    a = Backend("vmap", compile=True).map(fn, params, data, keys)
    b = Backend("vmap").map(fn, params, data, keys)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5)
