"""Contract suite: every option of conf/model/ runs on its data set's inputs and vectorizes.

The options are found by globbing the config directory when the tests are collected, so a
new model YAML is checked with no other edit. A model is meant for the data sets whose
config selects a model of the same class (`dataset=D` composed), else for the synthetic
default. It is built the way `pfl.run.train` builds it (the data set's class count and model
arguments) and checked on a few random examples of the data set's stored shape and dtype,
passed through the data set's input transform. A data set that reads files (a `root:` setting)
is described by its loader's declaration (pfl.data.inputs: `@declares`), the one the loader
builds its data from; any other is built for real:

- forward: logits of shape labels' shape + (num_classes,), finite;
- vmap == loop: over a small stack of parameter sets (and one batch per set), the forward
  pass and the gradient of the loss (torch.func functional_call / vmap / grad, eval mode), in
  float64 so that the tolerance is tight (float32 sums in another order differ by ~1e-3 relative
  in ResNet-18's first layers' gradients).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Callable, NamedTuple

import pytest
import torch
from torch import Tensor
from torch.func import functional_call, grad, vmap

from pfl.cli import CONF_DIR
from pfl.config.settings import locate
from pfl.data.inputs import declared_inputs
from pfl.run import build
from tests.helpers import compose_cfg

MODELS = sorted(p.stem for p in (Path(CONF_DIR) / "model").glob("*.yaml"))
DATASETS = sorted(p.stem for p in (Path(CONF_DIR) / "dataset").glob("*.yaml"))

# Per-option settings; an option without an entry needs none. Keys:
#   datasets: the data sets to check it on when no data set selects it
#   xfail: {check: reason} for a known bug (strict)
SETTINGS: dict[str, dict] = {
    "small_cnn": {"datasets": ["emnist", "cifar100"]},  # the quick CPU stand-in for the image models
    "small_bn_cnn": {"datasets": ["emnist"]},  # small_cnn with batch norm (FedBN's model)
}


class Inputs(NamedTuple):
    x: Callable[[int], Tensor]  # n -> n stored examples
    y_shape: tuple  # one example's label shape
    transform: Callable[[Tensor], Tensor] | None
    model_kwargs: dict
    num_classes: int


def cases(check: str) -> list:
    out = []
    for name in MODELS:
        reason = SETTINGS.get(name, {}).get("xfail", {}).get(check)
        out.append(pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=reason)) if reason else name)
    return out


@cache
def _model_target(overrides: tuple[str, ...]) -> str:
    return compose_cfg(list(overrides), tiny=False).model._target_


def datasets_for(model: str) -> list[str]:
    if "datasets" in SETTINGS.get(model, {}):
        return SETTINGS[model]["datasets"]
    target = _model_target((f"model={model}",))
    return [d for d in DATASETS if _model_target((f"dataset={d}",)) == target] or ["synthetic"]


@cache
def inputs_of(dataset: str) -> Inputs:
    cfg = compose_cfg([f"dataset={dataset}"], tiny=False)
    settings = {k: v for k, v in cfg.dataset.items() if not k.startswith("_")}
    declared = declared_inputs(locate(cfg.dataset._target_), settings)
    if declared is not None:
        return Inputs(declared.examples, declared.y_shape, declared.transform, dict(declared.model_kwargs),
                      declared.num_classes)
    assert "root" not in cfg.dataset, (f"data set {dataset} reads files (`root:`) but its loader {cfg.dataset._target_} "
                                       "declares no model inputs: decorate it with pfl.data.inputs.declares(...)")
    data = build(cfg.dataset)
    pool = data.train.train
    return Inputs(lambda n: pool.x[:n].clone(), tuple(pool.y.shape[1:]), data.input_transform,
                  dict(data.info.get("model_kwargs", {})), data.num_classes)


def build_model(model: str, dataset: str):
    cfg = compose_cfg([f"dataset={dataset}", f"model={model}"], tiny=False)
    spec = inputs_of(dataset)
    torch.manual_seed(0)
    net = build(cfg.model, num_classes=spec.num_classes, **spec.model_kwargs).eval()
    return net, spec


def batch(spec: Inputs, n: int, seed: int) -> tuple[Tensor, Tensor]:
    torch.manual_seed(seed)
    x = spec.x(n)
    x = spec.transform(x) if spec.transform is not None else x
    return x, torch.randint(0, spec.num_classes, (n, *spec.y_shape))


def test_the_registry_is_discovered():
    assert len(MODELS) >= 2 and "synthetic" in DATASETS, (MODELS, DATASETS)
    assert set(SETTINGS) <= set(MODELS), f"SETTINGS names options that do not exist: {set(SETTINGS) - set(MODELS)}"
    assert all(d in DATASETS for s in SETTINGS.values() for d in s.get("datasets", [])), "SETTINGS names a missing data set"


@pytest.mark.parametrize("model", cases("forward"))
def test_forward_on_its_data_sets(model):
    for dataset in datasets_for(model):
        net, spec = build_model(model, dataset)
        x, y = batch(spec, 3, seed=1)
        with torch.no_grad():
            logits = net(x)
        assert logits.shape == (*y.shape, spec.num_classes), (dataset, tuple(logits.shape))
        assert torch.isfinite(logits).all(), dataset


@pytest.mark.parametrize("model", cases("vmap"))
def test_vmap_equals_loop(model):
    dataset = datasets_for(model)[0]
    net, spec = build_model(model, dataset)
    net = net.double()
    params = {k: v.detach() for k, v in net.named_parameters()}
    buffers = {k: v.detach() for k, v in net.named_buffers()}
    stacks = 2
    g = torch.Generator().manual_seed(2)
    stacked = {k: torch.stack([v + 0.01 * i * torch.randn(v.shape, generator=g) for i in range(stacks)])
               for k, v in params.items()}
    xs, ys = zip(*(batch(spec, 2, seed=10 + i) for i in range(stacks)))
    xs, ys = torch.stack(xs), torch.stack(ys)
    xs = xs.double() if xs.is_floating_point() else xs

    def forward(p, x):
        return functional_call(net, (p, buffers), (x,))

    def loss(p, x, y):
        logits = forward(p, x)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def one(i):
        return {k: v[i] for k, v in stacked.items()}

    out = vmap(forward)(stacked, xs)
    torch.testing.assert_close(out, torch.stack([forward(one(i), xs[i]) for i in range(stacks)]),
                               rtol=1e-9, atol=1e-12)
    grads = vmap(grad(loss))(stacked, xs, ys)
    loop = [grad(loss)(one(i), xs[i], ys[i]) for i in range(stacks)]
    for k in params:
        torch.testing.assert_close(grads[k], torch.stack([d[k] for d in loop]), rtol=1e-9, atol=1e-12, msg=k)


@pytest.mark.parametrize("dataset", DATASETS)
def test_a_data_set_that_reads_files_declares_its_inputs(dataset):
    cfg = compose_cfg([f"dataset={dataset}"], tiny=False)
    declared = declared_inputs(locate(cfg.dataset._target_), dict(cfg.dataset))
    if "root" in cfg.dataset:
        assert declared is not None, f"dataset={dataset}: its loader declares no model inputs (pfl.data.inputs.declares)"
    if declared is not None:
        x = declared.examples(2)
        assert x.shape == (2, *declared.x_shape) and x.dtype == declared.x_dtype and int(x.max()) < declared.x_high


def test_a_loader_refuses_examples_unlike_its_declaration():
    from types import SimpleNamespace

    from pfl.data.download import DataError
    from pfl.data.emnist import emnist_inputs

    split = SimpleNamespace(x=torch.zeros(4, 28, 28, dtype=torch.uint8), y=torch.zeros(4, dtype=torch.int64))
    pop = SimpleNamespace(train=split, test=split)
    data = SimpleNamespace(name="emnist", train=pop, heldout=pop)
    assert emnist_inputs().check(data) is data
    wide = SimpleNamespace(train=SimpleNamespace(x=torch.zeros(4, 28, 29, dtype=torch.uint8), y=split.y), test=split)
    with pytest.raises(DataError, match=r"x \(28, 29\)"):
        emnist_inputs().check(SimpleNamespace(name="emnist", train=pop, heldout=wide))
