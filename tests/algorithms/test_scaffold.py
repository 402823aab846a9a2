"""SCAFFOLD (Karimireddy et al. 2020, Alg. 1, option II): FedAvg with zero control variates,
the control-variate update by hand, the server's c with |S|/N, bytes, backends, resume."""

import pytest
import torch

from pfl import rng
from pfl.algorithms import SCAFFOLD, FedAvg
from pfl.algorithms.base import nbytes
from pfl.algorithms.local import LocalTrainer
from pfl.engine.round import Server, run_round
from pfl.execution import Backend
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.run import train
from pfl.task import Task

from tests.helpers import compose_cfg
from tests.helpers.baselines import assert_backends_agree, full_batch_grad, perturbed, stacked_state, updates
from tests.helpers.engine import cohort

LR = 0.1


def _setup(seed=0, batch=2, sizes=(5, 9, 3)):
    torch.manual_seed(seed)
    task = Task(MLP(5, 3, [4]))
    return task, task.init_params(), cohort(list(sizes)), LocalTrainer(task, ClientSGD(lr=LR, batch_size=batch))


def test_zero_control_variates_give_fedavg_in_the_first_round():
    task, params, data, local = _setup()
    alg = SCAFFOLD(local_epochs=2)
    out = updates(alg, local, params, data, state=stacked_state(alg, params, 3))
    ref = updates(FedAvg(local_epochs=2), local, params, data)
    for k in params:
        assert torch.equal(out.delta[k], ref.delta[k]), k
    # Δc = (x - y) / (K·lr) - c with c = 0, K_i = 2 epochs · ceil(n_i / 2)
    k_steps = torch.tensor([6.0, 10.0, 4.0])
    for k in params:
        expected = ref.delta[k] / (k_steps * LR).view(-1, *[1] * params[k].dim())
        torch.testing.assert_close(out.extra["dc"][k], expected)
    assert out.weight.tolist() == [1.0, 1.0, 1.0]  # Algorithm 1 averages uniformly


def test_option_two_by_hand():
    task, params, data, local = _setup(seed=1, batch=4, sizes=(4,))
    alg = SCAFFOLD(local_epochs=2)  # K = 2 full-batch steps
    c = perturbed({k: torch.zeros_like(v) for k, v in params.items()}, 3)
    c_i = perturbed({k: torch.zeros_like(v) for k, v in params.items()}, 4)
    out = updates(alg, local, params, data, state={k: v.unsqueeze(0) for k, v in c_i.items()},
                  server_state={"c": c, "num_clients": 10})
    x, y = data.x[0], data.y[0]
    p = dict(params)
    for _ in range(2):  # y ← y - lr (g(y) - c_i + c)
        g = full_batch_grad(task, p, x, y)
        p = {k: p[k] - LR * (g[k] - c_i[k] + c[k]) for k in p}
    for k in params:
        new_ci = c_i[k] - c[k] + (params[k] - p[k]) / (2 * LR)  # option II
        torch.testing.assert_close(out.delta[k][0], params[k] - p[k])
        torch.testing.assert_close(out.state[k][0], new_ci)
        torch.testing.assert_close(out.extra["dc"][k][0], new_ci - c_i[k])
    # with K = 1, option II's c_i⁺ is the full-batch gradient at x, whatever c and c_i were
    one = updates(SCAFFOLD(local_epochs=1), local, params, data, state={k: v.unsqueeze(0) for k, v in c_i.items()},
                  server_state={"c": c, "num_clients": 10})
    g = full_batch_grad(task, params, x, y)
    for k in params:
        torch.testing.assert_close(one.state[k][0], g[k], rtol=1e-5, atol=1e-6)


def test_server_moves_c_by_cohort_over_population():
    task, params, data, local = _setup(seed=2)
    alg = SCAFFOLD(local_epochs=1)
    state0 = alg.init_server_state(params, num_clients=12)
    glob = {k: torch.nn.Parameter(v.clone()) for k, v in params.items()}
    server = Server(glob, torch.optim.SGD(glob.values(), lr=0.5), state0)
    keys = torch.stack([rng.key(0, i) for i in range(3)])
    out = run_round(alg, local, Backend("sequential"), server, data, keys, rng.key(0, 0x5E4D),
                    stacked_state(alg, params, 3))
    for k in params:
        torch.testing.assert_close(server.state["c"][k], 3 / 12 * out.updates.extra["dc"][k].mean(0))
        torch.testing.assert_close(glob[k].detach(), params[k] - 0.5 * out.updates.delta[k].mean(0))
    assert server.state["num_clients"] == 12
    size = nbytes(params)
    assert (out.bytes_down, out.bytes_up) == (3 * 2 * size, 3 * 2 * size)  # x and c down, Δy and Δc up


def test_vmap_equals_sequential():
    task, params, data, local = _setup(seed=3)
    alg = SCAFFOLD(local_epochs=2)
    state = {k: perturbed(v, 5, 0.05) for k, v in stacked_state(alg, params, 3).items()}
    c = perturbed({k: torch.zeros_like(v) for k, v in params.items()}, 6, 0.05)
    assert_backends_agree(alg, local, params, data, state, {"c": c, "num_clients": 10})


def _tensors(ckpt):
    return {k: v for k, v in ckpt["state_dict"].items()}


@pytest.mark.parametrize("algorithm", ["scaffold", "fedrep"])
def test_resume_is_exact_with_server_and_client_state(tmp_path, algorithm):
    from pytorch_lightning import Callback

    from pfl.config import hooks

    class Crash(Callback):
        def on_train_batch_end(self, trainer, module, *args):
            if int(module.round) == 5:
                raise KeyboardInterrupt("simulated crash")

    overrides = [f"algorithm={algorithm}", "rounds=6", "eval_every=3", "checkpoint_every=3", "server_opt.momentum=0.9"]
    overrides += ["algorithm.head_epochs=1"] if algorithm == "fedrep" else []  # state is state: 10 head epochs add only time
    full = train(compose_cfg(overrides), tmp_path / "full")
    hooks.register("crash", lambda cfg: [Crash()])
    try:
        with pytest.raises(BaseException):
            train(compose_cfg(overrides), tmp_path / "cut")
    finally:
        hooks._FACTORIES.pop("crash")
    resumed = train(compose_cfg(overrides + ["resume=true"]), tmp_path / "cut")
    for k in ("initial_accuracy", "personalized_accuracy", "personalization_curve", "train_clients", "bytes"):
        assert full[k] == resumed[k], k
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)
    assert int(a["state_dict"]["round"]) == int(b["state_dict"]["round"]) == 6
    assert any(k.startswith("client_state.") for k in a["state_dict"])
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    for sa, sb in zip(a["pfl"]["server_states"], b["pfl"]["server_states"]):
        for k in sa.get("c", {}):
            assert torch.equal(sa["c"][k], sb["c"][k]), k
