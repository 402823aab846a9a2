"""The AFML paper's baselines: FedAvg-FT, FedMeta, Per-FedAvg, APFL, local-only."""

import csv

import pytest
import torch
from torch import nn

from pfl import rng
from pfl.algorithms import APFL, FedMeta, PerFedAvg
from pfl.algorithms.local import LocalTrainer
from pfl.algorithms.perfedavg import hessian_vector_product
from pfl.data.synthetic import load_synthetic
from pfl.engine.round import client_updates
from pfl.execution import Backend
from pfl.models.mlp import MLP
from pfl.optim import ClientSGD
from pfl.run import train
from pfl.task import Task
from tests.helpers import TINY_PAPER2, compose_cfg, tiny


def _cfg(*overrides):
    return compose_cfg([*tiny(TINY_PAPER2), *overrides], tiny=False)


def test_hessian_vector_product_matches_explicit_hessian():
    torch.manual_seed(0)
    model = MLP(3, 2, [4]).double()
    task = Task(model)
    params = task.init_params()
    x, y, mask = torch.randn(6, 3, dtype=torch.float64), torch.randint(0, 2, (6,)), torch.ones(6, dtype=torch.bool)
    vec = {k: torch.randn_like(v) for k, v in params.items()}
    hv = hessian_vector_product(task.loss, params, vec, x, y, mask, None)
    names = list(params)
    flat = torch.cat([params[k].flatten() for k in names])
    sizes = [params[k].numel() for k in names]

    def loss_flat(theta):
        parts = dict(zip(names, (t.reshape(params[k].shape) for k, t in zip(names, theta.split(sizes)))))
        return task.loss(parts, x, y, mask, None)

    hessian = torch.autograd.functional.hessian(loss_flat, flat)
    expected = hessian @ torch.cat([vec[k].flatten() for k in names])
    torch.testing.assert_close(torch.cat([hv[k].flatten() for k in names]), expected)


@pytest.mark.parametrize("alg", [FedMeta(), FedMeta(variant="metasgd", inner_steps=2), PerFedAvg(variant="hf", support_fraction=0.8),
                                 APFL()], ids=["maml", "metasgd", "perfedavg-hf", "apfl"])
def test_baselines_vmap_equals_sequential(alg):
    torch.manual_seed(0)
    data = load_synthetic(num_clients=10, train_clients=6, min_examples=10, max_examples=40, dim=8, num_classes=4, seed=1)
    local = LocalTrainer(Task(MLP(8, 4, [6], dropout=0.2)), ClientSGD(lr=0.1, batch_size=5, momentum=0.5))
    glob = alg.init_global(local.task.init_params())
    cohort = data.train.train.gather(torch.arange(4))
    keys = torch.stack([rng.key(0, i) for i in range(4)])
    state = None
    if alg.init_client_state(glob) is not None:
        state = {k: v.unsqueeze(0).repeat(4, *[1] * v.dim()) for k, v in alg.init_client_state(glob).items()}

    a = client_updates(alg, local, Backend("vmap"), glob, cohort, keys, state)
    b = client_updates(alg, local, Backend("sequential"), glob, cohort, keys, state)
    assert set(a.delta) == set(glob)
    for k in a.delta:
        torch.testing.assert_close(a.delta[k], b.delta[k], rtol=1e-5, atol=1e-6)
    for k in a.state:
        torch.testing.assert_close(a.state[k], b.state[k], rtol=1e-5, atol=1e-6)


def test_metasgd_rates_are_learned_and_used_for_personalization():
    torch.manual_seed(0)
    alg = FedMeta(variant="metasgd", inner_lr=0.1)
    local = LocalTrainer(Task(MLP(4, 3, [])), ClientSGD())
    glob = alg.init_global(local.task.init_params())
    assert set(glob) == {"head.weight", "head.bias", "inner_lr.head.weight", "inner_lr.head.bias"}
    assert set(alg.model_params(glob)) == {"head.weight", "head.bias"}
    glob["inner_lr.head.bias"] = torch.zeros(3)
    glob["inner_lr.head.weight"] = torch.zeros(3, 4)
    data = load_synthetic(num_clients=4, train_clients=2, min_examples=10, max_examples=20, dim=4, num_classes=3).heldout
    client = data.train.gather(torch.tensor([0]))
    client = type(client)(client.x[0], client.y[0], client.n[0])
    seen = []
    alg.adapt(local, glob, client, rng.key(0), 2, lambda e, p: seen.append(p))
    # zero learned rates: personalization does not move the model
    assert all(torch.equal(p[k], glob[k]) for p in seen for k in p)


def test_apfl_client_state_survives_resume(tmp_path):
    """Kill after round 2 (a run of 2 rounds), resume to 4: the per-client state
    and the global model equal those of an uninterrupted 4-round run."""
    common = ["algorithm=apfl", "rounds=4", "eval_every=4", "checkpoint_every=2", "clients_per_round=4"]
    train(_cfg(*common), tmp_path / "straight")
    train(_cfg(*common[:1], "rounds=2", *common[2:]), tmp_path / "resumed")
    train(_cfg(*common, "resume=true"), tmp_path / "resumed")
    a = torch.load(tmp_path / "straight/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "resumed/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    state_keys = [k for k in a if k.startswith("client_state.")]
    assert state_keys and int(b["round"]) == 4
    for k in a:
        assert torch.equal(a[k], b[k]), k
    mix = a["client_state.apfl_mix"]
    assert ((mix >= 0) & (mix <= 1)).all() and (mix != 0.5).any()  # learned, projected


@pytest.mark.parametrize("name", ["fedavg_ft", "fedmeta", "perfedavg", "apfl", "local"])
def test_each_baseline_runs(name, tmp_path):
    extra = {"fedavg_ft": ["algorithm.finetune_steps=3"], "local": ["algorithm.epochs=3", "rounds=1", "eval_every=1"],
             "perfedavg": ["algorithm.variant=hf"], "fedmeta": ["algorithm.variant=metasgd"]}[name] if name != "apfl" else []
    s = train(_cfg(f"algorithm={name}", "zeta=0.5", "engine.count_flops=true", *extra), tmp_path)
    assert s["algorithm"] == name
    assert 0 <= s["personalized_accuracy"]["1"] <= 1 and "2" in s["personalized_accuracy"]
    if name == "local":
        assert "3" in s["personalized_accuracy"]  # Acc_local is reported
    if name == "fedavg_ft":
        assert set(s["personalized_accuracy"]) == {"1", "2"}  # read at Pers.1/Pers.k like every method
    assert s["bytes"]["down_total"] == (0 if name == "local" else s["bytes"]["up_total"])
    assert name == "local" or s["flops_per_round"][name] > 0


def test_local_baseline_gives_beats_local_fraction(tmp_path, monkeypatch):
    monkeypatch.setenv("PFL_CACHE", str(tmp_path / "cache"))
    s = train(_cfg("algorithm=fedavg", "personalization.local_baseline=true", "personalization.local_epochs=2",
                   "personalization.local_lr=0.05", "personalization.local_cache=true", "plots=true"), tmp_path)
    lb = s["local_baseline"]
    assert 0 <= lb["local_accuracy"] <= 1 and set(lb["beats_local_fraction"]) == {"1", "2"}
    with open(tmp_path / "clients_heldout.csv") as f:
        rows = list(csv.DictReader(f))
    acc_local = [float(r["acc_local"]) for r in rows]
    beats = sum(float(r["acc_2"]) > a for r, a in zip(rows, acc_local)) / len(rows)
    assert abs(beats - lb["beats_local_fraction"]["2"]) < 1e-9
    assert (tmp_path / "plots" / "scatter_local.png").stat().st_size > 0
    # the reference is the `local` algorithm: its Acc_local equals that run's Pers.K
    ref = train(_cfg("algorithm=local", "algorithm.epochs=2", "algorithm.lr=0.05", "rounds=1", "eval_every=1"), tmp_path / "l")
    assert abs(ref["personalized_accuracy"]["2"] - lb["local_accuracy"]) < 1e-9
    # a second run reuses the cached reference (same data, init and settings)
    (cached,) = (tmp_path / "cache/local_reference").glob("*.pt")
    stamp = cached.stat().st_mtime_ns
    again = train(_cfg("algorithm=fedsgd", "personalization.local_baseline=true", "personalization.local_epochs=2",
                       "personalization.local_lr=0.05", "personalization.local_cache=true"), tmp_path / "again")
    assert again["local_baseline"]["local_accuracy"] == lb["local_accuracy"]
    assert cached.stat().st_mtime_ns == stamp and len(list(cached.parent.glob("*.pt"))) == 1


def test_bad_settings_fail_with_the_key():
    from pfl.config.errors import ConfigError

    with pytest.raises(ConfigError, match="algorithm.variant"):
        FedMeta(variant="reptile")
    with pytest.raises(ConfigError, match="algorithm.support_fraction"):
        PerFedAvg(support_fraction=1.5)
    with pytest.raises(ConfigError, match="algorithm.mix_init"):
        APFL(mix_init=2)


class _NoHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x, key=None):
        return self.fc(x)


def test_afml_head_prefix_is_checked():
    from pfl.algorithms import AFML
    from pfl.config.errors import ConfigError

    with pytest.raises(ConfigError, match="model=.*submodule named `head`"):
        AFML().init_global(Task(_NoHead()).init_params())
