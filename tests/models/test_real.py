"""Char-LSTM and ResNet-18 (GroupNorm): sizes, recurrence, and vmap == sequential clients."""

from __future__ import annotations

import torch
from torch import nn

from pfl import rng
from pfl.algorithms.fedavg import FedAvg
from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import ClientData
from pfl.data.transforms import cifar_pixels, token_ids
from pfl.engine.round import client_updates
from pfl.execution import Backend
from pfl.models.cnn import SmallCNN
from pfl.models.lstm import CharLSTM, LSTMLayer
from pfl.models.resnet import ResNet18
from pfl.optim import ClientSGD
from pfl.task import Task


def test_parameter_counts_match_the_reference_models():
    # TFF Shakespeare model: 720 + 4*256*(8+256+1) + 4*256*(256+256+1) + 256*90+90
    assert sum(p.numel() for p in CharLSTM(90, vocab_size=90).parameters()) == 820_522
    with torch.device("meta"):  # shapes only: no memory, no initialization cost
        n = sum(p.numel() for p in ResNet18(100).parameters())
    assert 11.1e6 < n < 11.3e6  # ResNet-18, CIFAR form, 100 classes
    assert not any(isinstance(m, nn.BatchNorm2d) for m in ResNet18(10, width=4).modules())


def test_lstm_layer_equals_torch_lstm():
    torch.manual_seed(0)
    ours = LSTMLayer(5, 7)
    ref = nn.LSTM(5, 7, batch_first=True)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(ours.weight_ih)
        ref.weight_hh_l0.copy_(ours.weight_hh)
        ref.bias_ih_l0.copy_(ours.bias)
        ref.bias_hh_l0.zero_()
    x = torch.randn(3, 6, 5)
    torch.testing.assert_close(ours(x), ref(x)[0], atol=1e-6, rtol=1e-5)
    assert ours.bias[7:14].eq(1).all() and ours.bias[:7].eq(0).all()  # forget-gate bias 1 (Keras)


def test_char_lstm_shapes():
    m = CharLSTM(12, vocab_size=12, hidden=8)
    x = torch.randint(0, 12, (4, 9))
    assert m(x).shape == (4, 9, 12)
    assert CharLSTM(12, vocab_size=12, hidden=8, last_only=True)(x).shape == (4, 12)


def _cohort(make_x, make_y, sizes, width):
    g = torch.Generator().manual_seed(1)
    x = torch.stack([make_x(g, width) for _ in sizes])
    y = torch.stack([make_y(g, width) for _ in sizes])
    return ClientData(x, y, torch.tensor(sizes))


def _vmap_vs_sequential(model, transform, ignore_index, data, atol=1e-5):
    task = Task(model, transform, ignore_index)
    local = LocalTrainer(task, ClientSGD(lr=0.1, batch_size=2))
    alg = FedAvg(local_epochs=1)
    keys = torch.stack([rng.key(0, 0, i) for i in range(len(data.n))])
    params = task.init_params()
    seq = client_updates(alg, local, Backend("sequential"), params, data, keys)
    vec = client_updates(alg, local, Backend("vmap"), params, data, keys)
    for k in params:
        torch.testing.assert_close(vec.delta[k], seq.delta[k], atol=atol, rtol=1e-4)
        assert seq.delta[k].abs().sum() > 0  # every parameter moved
    torch.testing.assert_close(vec.metrics["loss"], seq.metrics["loss"], atol=atol, rtol=1e-4)


def test_char_lstm_vmap_equals_sequential():
    torch.manual_seed(0)
    tokens = lambda g, w: torch.randint(1, 20, (w, 6), generator=g, dtype=torch.uint8)  # noqa: E731
    targets = lambda g, w: torch.where(torch.rand(w, 6, generator=g) < 0.2, 0,  # noqa: E731
                                       torch.randint(1, 20, (w, 6), generator=g))
    data = _cohort(tokens, targets, [5, 2, 3], 5)  # unequal clients: masked steps and padding
    _vmap_vs_sequential(CharLSTM(20, vocab_size=20, hidden=16), token_ids, 0, data)


def test_resnet18_gn_vmap_equals_sequential():
    torch.manual_seed(0)
    images = lambda g, w: torch.randint(0, 256, (w, 3, 8, 8), generator=g, dtype=torch.uint8)  # noqa: E731
    labels = lambda g, w: torch.randint(0, 5, (w,), generator=g)  # noqa: E731
    data = _cohort(images, labels, [3, 2], 3)
    _vmap_vs_sequential(ResNet18(5, width=4, groups=2), cifar_pixels, None, data, atol=2e-5)


def test_small_cnn_takes_colour_images():
    m = SmallCNN(100, in_channels=3)
    assert m(cifar_pixels(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))).shape == (2, 100)
