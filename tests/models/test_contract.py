"""Contract suite: every option of conf/model/ runs on its data set's inputs and vectorizes.

The options are found by globbing the config directory when the tests are collected, so a
new model YAML is checked with no other edit. A model is meant for the data sets whose
config selects a model of the same class (`dataset=D` composed), else for the synthetic
default. It is built the way `pfl.run.train` builds it (the data set's class count and model
arguments) and checked on a few random examples of the data set's stored shape and dtype,
passed through the data set's input transform:

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
from pfl.data import text
from pfl.data.transforms import cifar_pixels, token_ids, unit_pixels
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


def _pixels(shape):
    return lambda n: torch.randint(0, 256, (n, *shape), dtype=torch.uint8)


def _tokens(seq_len):
    return lambda n: torch.randint(0, text.VOCAB_SIZE, (n, seq_len), dtype=torch.uint8)


# What the loaders of the real data sets (not available offline) store and hand the model
# (pfl/data/*.py). A data set generated on the fly (no `root:` setting) is built for real instead.
_EMNIST = Inputs(_pixels((28, 28)), (), unit_pixels, {"in_features": 784}, 62)
_CIFAR = Inputs(_pixels((3, 32, 32)), (), cifar_pixels, {"in_channels": 3, "in_features": 3072}, 100)
REAL_INPUTS = {
    "emnist": _EMNIST,
    "femnist_leaf": _EMNIST,
    "cifar100": _CIFAR,
    "fed_cifar100": _CIFAR,
    "shakespeare": Inputs(_tokens(80), (80,), token_ids, {"vocab_size": text.VOCAB_SIZE}, text.VOCAB_SIZE),
    "shakespeare_leaf": Inputs(_tokens(80), (), token_ids, {"vocab_size": text.VOCAB_SIZE, "last_only": True},
                               text.VOCAB_SIZE),
}


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
    if dataset in REAL_INPUTS:
        return REAL_INPUTS[dataset]
    cfg = compose_cfg([f"dataset={dataset}"], tiny=False)
    assert "root" not in cfg.dataset, f"describe the inputs of data set {dataset} in REAL_INPUTS"
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
