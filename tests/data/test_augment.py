"""Augmentation of ζ-permuted image clients: crop/flip, flags, backends agree."""

import torch
from torch import nn

from pfl import rng
from pfl.algorithms import FedAvg
from pfl.algorithms.local import LocalTrainer
from pfl.data.augment import RandomCropFlip, flag_permuted_clients
from pfl.data.federated import FederatedData, Population
from pfl.engine.round import client_updates
from pfl.execution import Backend
from pfl.optim import ClientSGD
from pfl.task import Task


def _candidates(img: torch.Tensor, pad: int):
    """Every crop of the zero-padded image, flipped or not (what the augmentation may return)."""
    h, w = img.shape[-2:]
    padded = nn.functional.pad(img, (pad, pad, pad, pad))
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[..., dy:dy + h, dx:dx + w]
            yield crop
            yield crop.flip(-1)


def test_crop_flip_returns_a_padded_crop_of_each_image():
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.uint8).reshape(2, 3, 5, 6) + 1  # no zero pixels
    out = RandomCropFlip(pad=2)(x, rng.key(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    for i in range(2):
        assert any(torch.equal(out[i], c) for c in _candidates(x[i], 2))
    # different examples / keys draw different crops, the same key the same
    many = torch.ones(64, 1, 8, 8)
    a, b = RandomCropFlip(pad=3)(many, rng.key(2)), RandomCropFlip(pad=3)(many, rng.key(2))
    assert torch.equal(a, b)
    assert len({int(t.sum()) for t in a}) > 3  # zero borders of varying size


def test_flip_only_and_grey_images():
    x = torch.rand(16, 4, 5)
    out = RandomCropFlip(pad=0)(x, rng.key(3))
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def _image_data(flags):
    g = torch.Generator().manual_seed(0)
    n = [7, 12, 5, 9]
    xs = [torch.randint(0, 255, (k, 1, 6, 6), generator=g, dtype=torch.uint8) for k in n]
    ys = [torch.randint(0, 3, (k,), generator=g) for k in n]
    pop = Population.from_clients([f"c{i}" for i in range(4)], xs, ys, xs, ys)
    return FederatedData("img", pop, pop, 3, input_transform=lambda x: x.float() / 255, augment=RandomCropFlip(pad=1),
                         info={"permuted": {"train": torch.tensor(flags), "heldout": torch.tensor(flags)}})


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.head = nn.Linear(32, 3)

    def forward(self, x, key=None):
        return self.head(torch.relu(self.conv(x)).flatten(1))


def test_only_flagged_clients_are_augmented():
    data = flag_permuted_clients(_image_data([True, False, True, False]))
    assert data.train.train.aug.tolist() == [True, False, True, False]
    assert data.train.test.aug is None  # test data is never augmented
    local = LocalTrainer(Task(_Tiny(), data.input_transform, augment=data.augment), ClientSGD(batch_size=4))
    cohort = data.train.train.gather(torch.arange(4))
    for i in range(4):
        client = type(cohort)(cohort.x[i], cohort.y[i], cohort.n[i], cohort.aug[i])
        plain = client._replace(aug=None)
        x_aug = local.batch(client, rng.key(5), torch.tensor(0))[0]
        x_plain = local.batch(plain, rng.key(5), torch.tensor(0))[0]
        assert torch.equal(x_aug, x_plain) != bool(cohort.aug[i])


def test_no_augmentation_without_an_augment_function():
    data = _image_data([True, True, False, False])
    data.augment = None
    assert flag_permuted_clients(data).train.train.aug is None


def test_vmap_equals_sequential_with_augmentation():
    data = flag_permuted_clients(_image_data([True, False, True, True]))
    torch.manual_seed(0)
    local = LocalTrainer(Task(_Tiny(), data.input_transform, augment=data.augment), ClientSGD(lr=0.1, batch_size=4))
    alg = FedAvg(local_epochs=2)
    params = local.task.init_params()
    cohort = data.train.train.gather(torch.arange(4))
    keys = torch.stack([rng.key(0, i) for i in range(4)])
    a = client_updates(alg, local, Backend("vmap"), params, cohort, keys)
    b = client_updates(alg, local, Backend("sequential"), params, cohort, keys)
    for k in a.delta:
        torch.testing.assert_close(a.delta[k], b.delta[k], rtol=1e-5, atol=1e-6)
    # and augmentation changed the result of the flagged clients
    c = client_updates(alg, local, Backend("vmap"), params, cohort._replace(aug=None), keys)
    moved = [not torch.allclose(a.delta["conv.weight"][i], c.delta["conv.weight"][i]) for i in range(4)]
    assert moved == [True, False, True, True]


def test_character_augment_pads_with_background_and_never_mirrors():
    from pfl.data.augment import CHARACTER_AUGMENT

    x = torch.zeros(64, 28, 28, dtype=torch.uint8)  # all "ink": any padding shows up as 255
    out = CHARACTER_AUGMENT(x, rng.key(5))
    assert set(out.unique().tolist()) <= {0, 255} and bool((out == 255).any())
    shifted = (out == 255).flatten(1).any(1)
    assert 0 < int(shifted.sum()) < 64  # most draws shift, zero shift is possible
    img = torch.arange(28, dtype=torch.uint8).repeat(28, 1).unsqueeze(0)  # column index as value
    for s in range(20):
        o = CHARACTER_AUGMENT(img, rng.key(s))[0]
        row = o[14][o[14] != 255]
        assert bool((row[1:] > row[:-1]).all())  # left-to-right order kept: no flip
