"""The char-LSTM's fast paths equal its reference ops (plain per-step autograd, `fused=False`):
the oneDNN layer (CPU float32, sequential clients), the hand-written BPTT Function (vmap, other
dtypes and devices), second-order differentiation, FLOP counts, and whole training rounds and
personalization evaluations of a tiny cohort."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad, vmap
from torch.utils.flop_counter import FlopCounterMode

from pfl import rng
from pfl.algorithms.fedavg import FedAvg
from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import ClientData
from pfl.data.transforms import token_ids
from pfl.engine.round import client_updates
from pfl.execution import Backend
from pfl.models.lstm import CharLSTM, LSTMLayer
from pfl.models.lstm_fused import recurrence
from pfl.optim import ClientSGD
from pfl.task import Task


def _pair(dtype=torch.float32, hidden=7):
    torch.manual_seed(0)
    ref, fast = LSTMLayer(5, hidden, fused=False), LSTMLayer(5, hidden, fused=True)
    fast.load_state_dict(ref.state_dict())
    params = {k: v.detach().to(dtype) for k, v in ref.named_parameters()}
    return ref, fast, params


def _loss(model):
    return lambda p, x, y: ((functional_call(model, p, (x,)) - y) ** 2).sum()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # float32: oneDNN; float64: the BPTT Function
def test_gradients_equal_the_reference(dtype):
    ref, fast, params = _pair(dtype)
    x, y = torch.randn(3, 6, 5, dtype=dtype), torch.randn(3, 6, 7, dtype=dtype)
    tol = dict(atol=1e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(functional_call(fast, params, (x,)), functional_call(ref, params, (x,)), **tol)
    want, got = grad(_loss(ref))(params, x, y), grad(_loss(fast))(params, x, y)
    for k in want:
        torch.testing.assert_close(got[k], want[k], **tol)
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}  # plain autograd too
    _loss(fast)(leaves, x, y).backward()
    for k in want:
        torch.testing.assert_close(leaves[k].grad, want[k], **tol)


@pytest.mark.parametrize("shared", [True, False])
def test_vmapped_clients_equal_the_reference(shared):
    ref, fast, params = _pair(torch.float64)
    xs, ys = torch.randn(4, 3, 6, 5, dtype=torch.float64), torch.randn(4, 3, 6, 7, dtype=torch.float64)
    if not shared:  # every client its own weights: a batched matmul per step
        params = {k: v + 0.01 * torch.randn(4, *v.shape, dtype=v.dtype) for k, v in params.items()}
    dims = (None if shared else 0, 0, 0)
    want = vmap(grad(_loss(ref)), in_dims=dims)(params, xs, ys)
    got = vmap(grad(_loss(fast)), in_dims=dims)(params, xs, ys)
    for k in want:
        torch.testing.assert_close(got[k], want[k], atol=1e-12, rtol=1e-10)


def test_bptt_function_passes_gradcheck():
    pre = torch.randn(4, 2, 12, dtype=torch.float64, requires_grad=True)
    w = torch.randn(12, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(recurrence, (pre, w))


def test_second_order_runs_the_reference_ops():
    ref, fast, params = _pair(torch.float32)
    x, y = torch.randn(3, 6, 5), torch.randn(3, 6, 7)

    def outer(model):
        return grad(lambda p: grad(_loss(model))(p, x, y)["weight_hh"].pow(2).sum())(params)

    want, got = outer(ref), outer(fast)
    for k in want:
        torch.testing.assert_close(got[k], want[k], atol=1e-5, rtol=1e-4)
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    g = torch.autograd.grad(_loss(fast)(leaves, x, y), list(leaves.values())[0], create_graph=False)
    assert g[0].abs().sum() > 0


def test_flops_counted_equal_on_every_path():
    torch.manual_seed(0)
    x = torch.randint(0, 20, (3, 6))
    counts = []
    for fused, dtype in ((False, torch.float64), (True, torch.float32), (True, torch.float64)):
        model = CharLSTM(20, vocab_size=20, hidden=8)
        for layer in model.lstm:
            layer.fused = fused
        params = {k: v.detach().to(dtype) for k, v in model.named_parameters()}
        with FlopCounterMode(display=False) as counter:
            grad(lambda p: functional_call(model, p, (x,)).sum())(params)
        counts.append(counter.get_total_flops())
    assert counts[1] == counts[2] > 0  # oneDNN (registered formula) == the BPTT Function's matmuls
    # the reference also multiplies the zero initial state by W_hh: one forward step per layer more
    per_step = 2 * 3 * 8 * 32  # batch 3, hidden 8, 4 gates x 8
    assert counts[0] - counts[1] == 2 * per_step


def _tiny_cohort():
    g = torch.Generator().manual_seed(1)
    sizes, width = [5, 2, 3], 5
    x = torch.randint(1, 20, (3, width, 6), generator=g, dtype=torch.uint8)
    y = torch.where(torch.rand(3, width, 6, generator=g) < 0.2, 0, torch.randint(1, 20, (3, width, 6), generator=g))
    return ClientData(x, y, torch.tensor(sizes))


def _models():
    torch.manual_seed(0)
    ref = CharLSTM(20, vocab_size=20, hidden=16)
    for layer in ref.lstm:
        layer.fused = False
    fast = CharLSTM(20, vocab_size=20, hidden=16)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


@pytest.mark.parametrize("kind", ["sequential", "vmap"])
def test_training_round_equals_the_reference(kind):
    data = _tiny_cohort()
    keys = torch.stack([rng.key(0, 0, i) for i in range(3)])
    out = []
    for model in _models():
        local = LocalTrainer(Task(model, token_ids, 0), ClientSGD(lr=0.5, batch_size=2))
        out.append(client_updates(FedAvg(local_epochs=2), local, Backend(kind), local.task.init_params(), data, keys))
    for k in out[0].delta:
        torch.testing.assert_close(out[1].delta[k], out[0].delta[k], atol=1e-5, rtol=1e-4)
        assert out[0].delta[k].abs().sum() > 0
    torch.testing.assert_close(out[1].metrics["loss"], out[0].metrics["loss"], atol=1e-6, rtol=1e-5)


def test_personalization_and_its_curve_equal_the_reference():
    from pfl.data.federated import Population
    from pfl.evaluation.personalize import personalize

    g = torch.Generator().manual_seed(2)
    sizes = [4, 1, 3]
    seqs = [torch.randint(1, 20, (n + 2, 7), generator=g) for n in sizes]
    pop = Population.from_clients([f"c{i}" for i in range(3)], [s[:-2, :-1].to(torch.uint8) for s in seqs],
                                  [s[:-2, 1:] for s in seqs], [s[-2:, :-1].to(torch.uint8) for s in seqs],
                                  [s[-2:, 1:] for s in seqs])
    out = []
    for model in _models():
        local = LocalTrainer(Task(model, token_ids, 0), ClientSGD(lr=0.5, batch_size=2))
        out.append(personalize(FedAvg(local_epochs=1), local, local.task.init_params(), pop, torch.arange(3), 3,
                               rng.key(0, 7), Backend("sequential")))
    assert torch.equal(out[1].num_test, out[0].num_test)
    # correct counts after k = 0..3 epochs equal; the adapted models differ by float rounding only
    assert torch.equal(out[1].correct, out[0].correct)
    assert not torch.equal(out[0].correct[:, 0], out[0].correct[:, -1])  # the curve moves


def test_rounds_resumed_from_a_copy_of_the_state_equal_uninterrupted_rounds():
    """Exact resume: the fast path is deterministic, so round 2 from a copy of the state after round 1
    (what a checkpoint holds: parameters and server optimizer state) equals round 2 run straight on."""
    from pfl.engine.round import Server, run_round

    data = _tiny_cohort()
    _, model = _models()
    local = LocalTrainer(Task(model, token_ids, 0), ClientSGD(lr=0.5, batch_size=2))

    def server(params, opt_state=None):
        ps = {k: torch.nn.Parameter(v.clone()) for k, v in params.items()}
        opt = torch.optim.SGD(ps.values(), lr=1.0, momentum=0.9)
        if opt_state is not None:
            opt.load_state_dict(opt_state)
        return Server(ps, opt)

    def round_(s, r):
        keys = torch.stack([rng.key(0, r, i) for i in range(3)])
        run_round(FedAvg(local_epochs=1), local, Backend("sequential"), s, data, keys, rng.key(0, r, 99))

    straight = server(local.task.init_params())
    round_(straight, 0)
    saved = ({k: v.detach().clone() for k, v in straight.params.items()},
             __import__("copy").deepcopy(straight.optimizer.state_dict()))
    round_(straight, 1)
    resumed = server(*saved)
    round_(resumed, 1)
    for k in straight.params:
        assert torch.equal(resumed.params[k], straight.params[k]), k
