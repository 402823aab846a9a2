"""FedDBE (Zhang et al. 2023): round 1 is FedAvg and yields the client's representation mean; one step
of CE + κ·MR on (θ, z̄ᵖ) by hand; the consensus is set once; the personalized model folds z̄ᵖ into
the head's bias; vmap == sequential."""

import torch

from pfl.algorithms import FedAvg, FedDBE
from pfl.algorithms.feddbe import PRBM
from pfl.algorithms.head_split import HeadSplit
from pfl.algorithms.local import LocalTrainer
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.task import Task

from tests.helpers.baselines import assert_backends_agree, updates
from tests.helpers.engine import cohort

LR = 0.1


def _setup(seed=0, batch=2, sizes=(5, 9, 3)):
    torch.manual_seed(seed)
    task = Task(MLP(5, 3, [4]))
    return task, task.init_params(), cohort(list(sizes)), LocalTrainer(task, ClientSGD(lr=LR, batch_size=batch))


def _prbm(num, seed=5):
    return {PRBM: torch.randn(num, 4, generator=torch.Generator().manual_seed(seed))}


def _server(ready, seed=6):
    return {"consensus": torch.randn(4, generator=torch.Generator().manual_seed(seed)), "ready": torch.tensor(ready)}


def test_round_one_is_fedavg_and_sends_the_representation_mean():
    task, params, data, local = _setup(batch=16)  # one full-batch step per client
    prbm = _prbm(3)
    out = updates(FedDBE(), local, params, data, state=prbm, server_state=_server(False))
    ref = updates(FedAvg(), local, params, data)
    for k in params:
        torch.testing.assert_close(out.delta[k], ref.delta[k], rtol=0, atol=0)
    assert torch.equal(out.state[PRBM], prbm[PRBM])  # no PRBM before the consensus
    hs = HeadSplit(task, "head")
    for i in range(3):  # μ = 1: the mean of f(x) over the client's examples, at the step's parameters
        n = int(data.n[i])
        z = hs.features(hs.split(params)[0], data.x[i, :n], None)
        torch.testing.assert_close(out.extra["mean"][i], z.mean(0))


def test_one_step_of_ce_plus_mean_regularization_by_hand():
    task, params, data, local = _setup(seed=1, batch=8, sizes=(6,))
    prbm, server = _prbm(1), _server(True)
    out = updates(FedDBE(kappa=3.0), local, params, data, state=prbm, server_state=server)
    hs = HeadSplit(task, "head")
    x, y = data.x[0], data.y[0]

    def loss(p):
        body, head = hs.split({k: v for k, v in p.items() if k != PRBM})
        z = hs.features(body, x, None)
        ce = torch.nn.functional.cross_entropy(hs.logits(head, z + p[PRBM]), y)
        return ce + 3.0 * 0.5 * ((z.mean(0) - server["consensus"]) ** 2).mean()

    p0 = {**params, PRBM: prbm[PRBM][0]}
    g = torch.func.grad(loss)(p0)
    for k in params:
        torch.testing.assert_close(out.delta[k][0], LR * g[k])
    torch.testing.assert_close(out.state[PRBM][0], p0[PRBM] - LR * g[PRBM])
    assert float(g[PRBM].abs().max()) > 0


def test_the_consensus_is_set_once_from_the_first_cohort():
    alg = FedDBE()
    p = {"w": torch.nn.Parameter(torch.zeros(2))}
    opt = torch.optim.SGD(p.values(), lr=1.0)
    means = torch.tensor([[1.0, 2.0, 3.0, 4.0], [3.0, 0.0, 1.0, 0.0]])
    upd = type("U", (), {"weight": torch.tensor([1.0, 3.0]), "extra": {"mean": means}})
    fresh = {"consensus": torch.zeros(4), "ready": torch.tensor(False)}
    s = alg.server_update(p, {"w": torch.ones(2)}, opt, fresh, upd)
    torch.testing.assert_close(s["consensus"], torch.tensor([2.5, 0.5, 1.5, 1.0]))
    assert bool(s["ready"])
    upd.extra = {"mean": means * 10}
    s2 = alg.server_update(p, {"w": torch.ones(2)}, opt, s, upd)
    assert torch.equal(s2["consensus"], s["consensus"])


def test_the_personalized_model_adds_the_bias_before_the_head():
    task, params, data, _ = _setup(seed=2)
    prbm = {PRBM: _prbm(1)[PRBM][0]}
    hs = HeadSplit(task, "head")
    x = data.x[1]
    z = hs.features(hs.split(params)[0], x, None)
    want = hs.logits(hs.split(params)[1], z + prbm[PRBM])
    torch.testing.assert_close(task.logits(FedDBE().personal_model(params, prbm), x), want)


def test_vmap_equals_sequential():
    task, params, data, local = _setup(seed=3)
    assert_backends_agree(FedDBE(local_epochs=2, momentum=0.5, kappa=2.0), local, params, data, _prbm(3), _server(True))


def test_a_model_without_a_linear_head_is_refused_in_one_line():
    import pytest

    from pfl.config.errors import ConfigError
    from pfl.models.cnn import SmallCNN

    params = Task(SmallCNN(3)).init_params()
    if "head.weight" in params:  # the models' last layer is called head everywhere
        params = {("fc9" + k[4:] if k.startswith("head.") else k): v for k, v in params.items()}
    with pytest.raises(ConfigError, match="a linear `head`"):
        FedDBE().init_server_state(params)
