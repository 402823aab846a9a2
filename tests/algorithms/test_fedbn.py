"""FedBN (Li et al. 2021): without BN layers it is FedAvg; with them one step by hand against torch's
batch norm, the BN parameters stay local and never travel; a misnamed BN layer is refused; the
masked BN ignores padding; vmap == sequential."""

import pytest
import torch
from torch import nn

from pfl import rng
from pfl.algorithms import FedAvg, FedBN
from pfl.algorithms.base import nbytes
from pfl.algorithms.local import LocalTrainer
from pfl.config.errors import ConfigError
from pfl.models.layers import MaskedBatchNorm
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.task import Task

from tests.helpers.baselines import assert_backends_agree, perturbed, stacked_state, updates
from tests.helpers.engine import cohort

LR = 0.1


def _setup(seed=0, batch=2, sizes=(5, 9, 3), bn=True):
    torch.manual_seed(seed)
    task = Task(MLP(5, 3, [4], batch_norm=bn))
    return task, task.init_params(), cohort(list(sizes)), LocalTrainer(task, ClientSGD(lr=LR, batch_size=batch))


def _bn_state(alg, params, num):
    return {k: v + 0.3 * torch.randn(v.shape, generator=torch.Generator().manual_seed(1))
            for k, v in stacked_state(alg, params, num).items()}


def test_without_bn_layers_it_is_fedavg():
    task, params, data, local = _setup(bn=False)
    alg = FedBN(local_epochs=2, weighting="examples")
    assert alg.init_client_state(params) is None
    out = updates(alg, local, params, data)
    ref = updates(FedAvg(local_epochs=2), local, params, data)
    for k in params:
        assert torch.equal(out.delta[k], ref.delta[k]), k
    assert torch.equal(out.weight, ref.weight)
    assert torch.equal(updates(FedBN(), local, params, data).weight, torch.ones(3))  # Alg. 1: 1/K


def test_masked_batch_norm_is_torch_batch_norm_on_the_real_rows():
    torch.manual_seed(0)
    bn = MaskedBatchNorm(3)
    bn.weight.data, bn.bias.data = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([0.0, -1.0, 3.0])
    x = torch.randn(6, 3, 2, 2)
    mask = torch.tensor([True, True, True, True, False, False])
    x[4:] = 100.0  # padding: must not move the statistics
    want = nn.functional.batch_norm(x[:4], None, None, bn.weight, bn.bias, training=True)
    torch.testing.assert_close(bn(x, mask)[:4], want)


def test_one_step_by_hand_and_bn_stays_local():
    task, params, data, local = _setup(seed=1, batch=8, sizes=(6,))
    alg = FedBN()
    own = _bn_state(alg, params, 1)
    out = updates(alg, local, params, data, state=own)
    x, y = data.x[0], data.y[0]

    def loss(p):  # the model written out with torch's batch norm (training mode: batch statistics)
        h = nn.functional.linear(x, p["hidden.0.weight"], p["hidden.0.bias"])
        h = nn.functional.batch_norm(h, None, None, p["bn.0.weight"], p["bn.0.bias"], training=True).relu()
        return nn.functional.cross_entropy(nn.functional.linear(h, p["head.weight"], p["head.bias"]), y)

    p0 = {**params, **{k: v[0] for k, v in own.items()}}
    g = torch.func.grad(loss)(p0)
    assert set(out.delta) == {k for k in params if not k.startswith("bn.")}
    assert set(out.state) == {"bn.0.weight", "bn.0.bias"}
    for k in out.delta:
        torch.testing.assert_close(out.delta[k][0], LR * g[k])
    for k in out.state:
        torch.testing.assert_close(out.state[k][0], p0[k] - LR * g[k])
    sent = alg.broadcast(params, rng.key(0), {})
    assert set(sent) == set(out.delta)
    assert alg.bytes_exchanged(sent, out) == (nbytes(sent), nbytes(sent))  # the BN parameters never travel
    personal = alg.personal_model(params, {k: v[0] for k, v in own.items()})
    assert torch.equal(personal["bn.0.weight"], own["bn.0.weight"][0])
    assert torch.equal(personal["head.weight"], params["head.weight"])


def test_a_bn_layer_not_named_bn_is_refused():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(5, 4)
            self.norm = MaskedBatchNorm(4)
            self.head = nn.Linear(4, 3)

        def forward(self, x, key=None, mask=None):
            return self.head(self.norm(self.lin(x), mask))

    task = Task(Odd())
    local = LocalTrainer(task, ClientSGD(lr=LR, batch_size=2))
    with pytest.raises(ConfigError, match="named bn"):
        updates(FedBN(), local, task.init_params(), cohort([4, 3]))


def test_a_clients_accuracy_does_not_depend_on_its_padding():
    task, params, data, _ = _setup(seed=2)
    params = perturbed(params, 4, 1.0)
    x, y, n = data.x[2], data.y[2], int(data.n[2])  # 3 real rows padded to 9
    alone = task.correct(params, x[:n], y[:n], torch.ones(n, dtype=torch.bool))
    padded = task.correct(params, x, y, torch.arange(x.shape[0]) < n)
    assert [int(t) for t in alone] == [int(t) for t in padded]
    torch.testing.assert_close(task.logits(params, x, None, torch.arange(x.shape[0]) < n)[:n],
                               task.logits(params, x[:n], None))


def test_vmap_equals_sequential():
    task, params, data, local = _setup(seed=3)
    alg = FedBN(local_epochs=2)
    assert_backends_agree(alg, local, params, data, _bn_state(alg, params, 3))
