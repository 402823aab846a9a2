"""GPFL (Zhang et al. 2023): one step of CE + angle + λ·magnitude + μ-regularization by hand; the
conditional inputs g and p_i; with the valve at identity the personalized predictor is the task's model
with the client's head; vmap == sequential."""

import torch
from torch import nn

from pfl import rng
from pfl.algorithms import GPFL
from pfl.algorithms.gpfl import GCE, P, PROPS
from pfl.algorithms.head_split import HeadSplit
from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import ClientData
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.task import Task

from tests.helpers.baselines import assert_backends_agree, perturbed, stacked_state, updates
from tests.helpers.engine import cohort

LR = 0.1


def _setup(seed=0, batch=2, sizes=(5, 9, 3)):
    torch.manual_seed(seed)
    task = Task(MLP(5, 3, [4]))
    alg = GPFL(lam=0.3, mu=0.2)
    return task, alg, alg.init_global(task.init_params()), cohort(list(sizes)), \
        LocalTrainer(task, ClientSGD(lr=LR, batch_size=batch))


def _valve_by_hand(params, f, c):
    def cond(name):
        lin = nn.functional.linear(c, params[f"gpfl.{name}.weight"], params[f"gpfl.{name}.bias"]).relu()
        mean, var = lin.mean(), lin.var(unbiased=False)
        return (lin - mean) / torch.sqrt(var + 1e-5) * params[f"gpfl.{name}.ln_weight"] + params[f"gpfl.{name}.ln_bias"]
    return torch.relu(f * (1 + cond("gamma")) + cond("beta"))


def test_one_step_by_hand():
    task, alg, params, data, local = _setup(batch=8, sizes=(6,))
    state = stacked_state(alg, params, 1)
    state["head.weight"] = state["head.weight"] + 0.3
    out = updates(alg, local, params, data, state=state)
    hs = HeadSplit(task, "head")
    x, y = data.x[0], data.y[0]
    e = params[GCE]
    props = torch.bincount(y, minlength=3).float() / 6
    g, p = e.mean(0), (props.unsqueeze(-1) * e).sum(0)

    def loss(tr):
        f = torch.relu(nn.functional.linear(x, tr["hidden.0.weight"], tr["hidden.0.bias"]))
        out = nn.functional.linear(_valve_by_hand(tr, f, p), tr["head.weight"], tr["head.bias"])
        fg = _valve_by_hand(tr, f, g)
        cos = torch.stack([nn.functional.cosine_similarity(fg, tr[GCE][c].expand_as(fg), dim=-1) for c in range(3)], -1)
        magnitude = torch.sqrt(((fg - e[y]) ** 2).sum())
        reg = sum((v ** 2).sum() for k, v in tr.items() if k.startswith("gpfl."))
        ce = nn.functional.cross_entropy
        return ce(out, y) + ce(cos, y) + 0.3 * magnitude + 0.5 * 0.2 * reg

    tr0 = {**{k: v for k, v in params.items() if not k.startswith("head.")},
           **{k: v[0] for k, v in state.items() if k != PROPS}}
    grads = torch.func.grad(loss)(tr0)
    assert set(out.delta) == {k for k in params if not k.startswith("head.")}
    for k in out.delta:
        torch.testing.assert_close(out.delta[k][0], LR * grads[k], rtol=1e-4, atol=1e-6)
    for k in ("head.weight", "head.bias"):
        torch.testing.assert_close(out.state[k][0], tr0[k] - LR * grads[k], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out.state[PROPS][0], props)
    torch.testing.assert_close(alg.personal_model(params, {k: v[0] for k, v in out.state.items()})[P], p)
    torch.testing.assert_close(alg.personal_model(params, None)[P], g)


def test_with_the_valve_at_identity_the_predictor_is_the_task_model():
    task, alg, params, data, local = _setup(seed=1)
    for k in params:
        if k.startswith("gpfl.") and k != GCE:
            params[k] = torch.zeros_like(params[k])  # γ = β = 0: CoV(f) = ReLU(f) = f after the MLP's ReLU
    own = {k: v[0] for k, v in stacked_state(alg, params, 1).items()}
    own["head.bias"] = own["head.bias"] + torch.tensor([0.5, -0.5, 0.0])
    model = alg.personal_model(params, own)
    n = int(data.n[1])
    d = ClientData(data.x[1, :n], data.y[1, :n], data.n[1])
    plain = {k: v for k, v in model.items() if not k.startswith("gpfl.")}
    assert [int(t) for t in alg.evaluate(local, model, d)] == [int(t) for t in local.evaluate(plain, d)]
    seen = []
    alg.adapt(local, params, d, rng.key(1, 2), 1, lambda e, m: seen.append(m), state=own)
    ref = []
    local.train_by_epoch({k: v for k, v in plain.items() if k.startswith("head.")}, d, rng.key(1, 2), 1,
                         lambda e, h: ref.append(h),
                         loss=lambda h, *a: task.loss({**plain, **h}, *a))
    for k in ref[0]:  # the head-only personalization is FedRep's on the task's model
        torch.testing.assert_close(seen[0][k], ref[0][k])


def test_vmap_equals_sequential():
    task, alg, params, data, local = _setup(seed=2)
    state = stacked_state(alg, params, 3)
    state["head.weight"] = state["head.weight"] + perturbed({"w": state["head.weight"]}, 3, 0.2)["w"]
    assert_backends_agree(GPFL(local_epochs=2), local, params, data, state)
