"""FedALA (Zhang et al. 2023): with W fixed at 1 it is FedAvg; one ALA step of W by hand (Eq. 6);
the start phase takes `start_epochs` passes; a fresh client starts from Θ; vmap == sequential."""

import torch

from pfl.algorithms import FedALA, FedAvg
from pfl.algorithms.local import LocalTrainer
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.task import Task

from tests.helpers.baselines import assert_backends_agree, full_batch_grad, perturbed, updates
from tests.helpers.engine import cohort

LR = 0.1


def _setup(seed=0, batch=2, sizes=(5, 9, 3)):
    torch.manual_seed(seed)
    task = Task(MLP(5, 3, [4]))
    return task, task.init_params(), cohort(list(sizes)), LocalTrainer(task, ClientSGD(lr=LR, batch_size=batch))


def _state(alg, params, rounds, seed=3, w=None):
    """Stacked client state: a local model away from Θ, mixing weights `w` (default 1), the round counts."""
    one = alg.init_client_state(params)
    local = perturbed(params, seed, 0.5)
    rows = []
    for r in rounds:
        row = {**one, **{"local." + k: v for k, v in local.items()}, "rounds": torch.tensor(r)}
        if w is not None:
            row.update({k: torch.full_like(v, w) for k, v in row.items() if k.startswith("w.")})
        rows.append(row)
    return {k: torch.stack([r[k] for r in rows]) for k in one}


def test_weights_fixed_at_one_is_fedavg():
    task, params, data, local = _setup()
    alg = FedALA(local_epochs=2, ala_lr=0.0)
    out = updates(alg, local, params, data, state=_state(alg, params, [2, 1, 0]))
    ref = updates(FedAvg(local_epochs=2), local, params, data)
    for k in params:
        torch.testing.assert_close(out.delta[k], ref.delta[k], rtol=0, atol=0)
    assert torch.equal(out.state["rounds"], torch.tensor([3, 2, 1]))


def _one_w_step(task, params, prev, w, x, y, eta):
    """Eq. 5-6 by hand: θ̂ = θ + (Θ - θ)W on the head, Θ below; W ← clip(W - η ∂L/∂θ̂ ⊙ (Θ - θ))."""
    mixed = {k: prev[k] + (params[k] - prev[k]) * w[k] if k in w else params[k] for k in params}
    g = full_batch_grad(task, mixed, x, y)
    return {k: (w[k] - eta * g[k] * (params[k] - prev[k])).clamp(0, 1) for k in w}


def test_weight_steps_by_hand_and_the_start_phase():
    task, params, data, local = _setup(seed=1, batch=8, sizes=(6,))
    prev = perturbed(params, 3, 0.5)
    x, y = data.x[0], data.y[0]
    for rounds, passes in ((2, 1), (1, 3)):  # outside the start phase one pass, in it start_epochs
        alg = FedALA(sample_percent=100, ala_lr=2.0, start_epochs=3)
        out = updates(alg, local, params, data, state=_state(alg, params, [rounds], w=0.5))
        w = {k[2:]: v[0] for k, v in _state(alg, params, [rounds], w=0.5).items() if k.startswith("w.")}
        for _ in range(passes):  # batch 8 > 6 examples: a pass is one full-batch step
            w = _one_w_step(task, params, prev, w, x, y, 2.0)
        assert set(w) == {"head.weight", "head.bias"}
        for k in w:
            torch.testing.assert_close(out.state["w." + k][0], w[k])
        assert 0 < float(w["head.weight"].min()) < float(w["head.weight"].max()) < 1  # the clip is not all it does


def test_a_fresh_client_starts_from_the_global_model_and_keeps_w():
    task, params, data, local = _setup(seed=2)
    alg = FedALA(ala_lr=5.0)
    st = _state(alg, params, [0, 0, 0], w=0.3)
    out = updates(alg, local, params, data, state=st)
    ref = updates(FedAvg(), local, params, data)
    for k in params:
        torch.testing.assert_close(out.delta[k], ref.delta[k], rtol=0, atol=0)
    for k in st:
        if k.startswith("w."):
            assert torch.equal(out.state[k], st[k]), k  # Θ - θ = 0: no gradient on W
    one = {k: v[1] for k, v in st.items()}
    assert all(torch.equal(alg.personal_model(params, one)[k], params[k]) for k in params)
    one["rounds"] = torch.tensor(2)
    mixed = alg.personal_model(params, one)
    assert torch.equal(mixed["hidden.0.weight"], params["hidden.0.weight"])  # the body is Θ's
    theta = one["local.head.bias"]
    torch.testing.assert_close(mixed["head.bias"], theta + 0.3 * (params["head.bias"] - theta))


def test_vmap_equals_sequential():
    task, params, data, local = _setup(seed=4)
    alg = FedALA(start_epochs=2, sample_percent=50)
    assert_backends_agree(alg, local, params, data, _state(alg, params, [0, 1, 2], w=0.7))
