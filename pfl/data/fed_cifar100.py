"""TensorFlow Federated's federated CIFAR-100 (Pachinko allocation, 100 images a client).

Files `fed_cifar100_{train,test}.h5` (archive `fed_cifar100.tar.bz2`), layout
`/examples/<client_id>/{image, label, coarse_label}`: image uint8
[n, 32, 32, 3], label 0-99. The train file has 500 clients (the CIFAR-100
training images), the test file 100 other clients (the test images), so TFF's
split is by client, not within a client.

Here the 500 train-file clients form the training population and the 100
test-file clients the held-out one; every client's own images are split at
random (by `seed`) into `test_fraction` (0.2) test and the rest train, so each
client can be personalized and tested. Counts: `train_clients` (null: 500),
`heldout_clients` (null: 100).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np

from pfl.config.errors import check, is_int
from pfl.data.cache import Source, decoded
from pfl.data.download import Remote
from pfl.data.emnist import read_h5_clients
from pfl.data.augment import RandomCropFlip
from pfl.data.federated import FederatedData
from pfl.data.validate import check_client
from pfl.data.packed import Packed, assemble, pack_arrays, unpack_arrays
from pfl.data.cifar100 import cifar_inputs
from pfl.data.inputs import declares
from pfl.config.settings import checked, number

TFF_URL = "https://storage.googleapis.com/tff-datasets-public/"
# sha256 published in TFF's loader (tff.simulation.datasets.cifar100.load_data)
ARCHIVE = Remote("fed_cifar100.tar.bz2", TFF_URL + "fed_cifar100.tar.bz2",
                 sha256="e8575e22c038ecef1ce6c7d492d7abee7da13b1e1ba9b70a7fc18531ba7590de")
SOURCE = Source("fed_cifar100", ("fed_cifar100_train.h5", "fed_cifar100_test.h5"), ARCHIVE)


def _sort_key(cid: str):
    return (0, int(cid)) if cid.isdigit() else (1, cid)


def _decode(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    out = {}
    for name in ("train", "test"):
        clients = read_h5_clients(paths[f"fed_cifar100_{name}.h5"], ("image", "label"))
        ids = sorted(clients, key=_sort_key)
        for c in ids:
            check_client(*clients[c], 100, f"{paths[f'fed_cifar100_{name}.h5']}, client {c}")
        xs = [np.ascontiguousarray(np.asarray(clients[c][0], np.uint8).transpose(0, 3, 1, 2)) for c in ids]
        ys = [np.asarray(clients[c][1]).astype(np.uint8).reshape(-1) for c in ids]
        out[f"{name}_ids"] = np.array(ids)
        out.update(pack_arrays(name, Packed.from_lists(xs, ys, (3, 32, 32), np.uint8, np.uint8)))
    return out


def split_within_clients(p: Packed, test_fraction: float, rng: np.random.Generator) -> tuple[Packed, Packed]:
    """Each client's examples at random into (train, test); test gets round(f·n), at least 1 if n >= 2."""
    tr_x, tr_y, te_x, te_y = [], [], [], []
    for start, n in zip(p.offsets, p.counts):
        order = start + rng.permutation(n)
        k = int(round(test_fraction * n))
        k = min(max(k, 1 if n >= 2 else 0), n - 1 if n >= 1 else 0)
        te, tr = np.sort(order[:k]), np.sort(order[k:])
        tr_x.append(p.x[tr]), tr_y.append(p.y[tr]), te_x.append(p.x[te]), te_y.append(p.y[te])
    return Packed.from_lists(tr_x, tr_y), Packed.from_lists(te_x, te_y)


@declares(cifar_inputs)
@checked("dataset")
def load_fed_cifar100(
    root: str | None = None,
    cache_dir: str | None = None,
    train_clients: int | None = None,
    heldout_clients: int | None = None,
    test_fraction: Annotated[float, number(gt=0, lt=1)] = 0.2,  # each client's own images split into train / test
    zeta: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> FederatedData:
    arrays = decoded(SOURCE, "fed_cifar100", _decode, root, cache_dir, progress)
    pools = [unpack_arrays(n, arrays) for n in ("train", "test")]
    sizes = [len(p.counts) for p in pools]
    wanted = []
    for key, value, size in (("train_clients", train_clients, sizes[0]), ("heldout_clients", heldout_clients, sizes[1])):
        value = size if value is None else value
        check(is_int(value) and 1 <= value <= size, f"dataset.{key}", value, f"null or an integer in [1, {size}]")
        wanted.append(value)
    rng = np.random.default_rng([seed, 0xFC10])
    parts = [split_within_clients(p.take(range(k)), test_fraction, rng) for p, k in zip(pools, wanted)]
    train = Packed.concat([parts[0][0], parts[1][0]])
    test = Packed.concat([parts[0][1], parts[1][1]])
    ids = [f"train/{i}" for i in arrays["train_ids"][: wanted[0]]] + [f"test/{i}" for i in arrays["test_ids"][: wanted[1]]]
    inputs = cifar_inputs()
    return inputs.check(assemble(
        "fed_cifar100", ids, train, test, range(wanted[0]), range(wanted[0], wanted[0] + wanted[1]), inputs.num_classes,
        zeta, seed, input_transform=inputs.transform, info=inputs.info(test_fraction=test_fraction),
        augment=RandomCropFlip(pad=4),
    ))
