"""TensorFlow Federated's federated EMNIST, split by writer (Jiang et al. 2019).

Files `fed_emnist_{train,test}.h5` (archive `fed_emnist.tar.bz2`; with
`only_digits: true`, `fed_emnist_digitsonly_*` from
`fed_emnist_digitsonly.tar.bz2`), layout `/examples/<client_id>/{pixels,
label}`: pixels float32 [n, 28, 28] in [0, 1] with 1.0 = background (kept as
is, like TFF's model), labels 0-61 (10 digits, 26 upper, 26 lower case).
EMNIST-62: 3400 writers, 671,585 train / 77,483 test images; digits only:
3383 writers, 10 classes. Each writer keeps its own train/test split.

Writers in sorted id order: the first `train_clients` (2500) train, the next
`heldout_clients` (null: all the rest, 900 for EMNIST-62) are held out.
Pixels are stored as uint8 (the source values are multiples of 1/255) and
scaled back to [0, 1] on the device; `invert: true` feeds 1 - pixel instead
(0 = background, as MNIST), which the CNN learns much faster at SGD lr 0.02
(measured on the LEAF FEMNIST sample: 55% vs 15% test accuracy after 300
central steps of batch 20).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from pfl.data.cache import Source, decoded
from pfl.data.download import Remote
from pfl.data.augment import CHARACTER_AUGMENT
from pfl.data.federated import FederatedData
from pfl.data.packed import Packed, assemble, pack_arrays, population_split, unpack_arrays
from pfl.data.validate import check_client
from pfl.data.inputs import ModelInputs, declares
from pfl.data.transforms import inverted_unit_pixels, unit_pixels

TFF_URL = "https://storage.googleapis.com/tff-datasets-public/"
# sha256 values published in TFF's loader (tff.simulation.datasets.emnist.load_data)
ARCHIVES = {
    False: Remote("fed_emnist.tar.bz2", TFF_URL + "fed_emnist.tar.bz2",
                  sha256="fe1ed5a502cea3a952eb105920bff8cffb32836b5173cb18a57a32c3606f3ea0"),
    True: Remote("fed_emnist_digitsonly.tar.bz2", TFF_URL + "fed_emnist_digitsonly.tar.bz2",
                 sha256="55333deb8546765427c385710ca5e7301e16f4ed8b60c1dc5ae224b42bd5b14b"),
}


def source(only_digits: bool) -> Source:
    prefix = "fed_emnist_digitsonly" if only_digits else "fed_emnist"
    return Source("emnist", (f"{prefix}_train.h5", f"{prefix}_test.h5"), ARCHIVES[only_digits])


def read_h5_clients(path: Path, fields: tuple[str, str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{client_id: (inputs, labels)} from a TFF h5 file `/examples/<id>/<field>`."""
    with h5py.File(path, "r") as f:
        ex = f["examples"]
        return {cid: (ex[cid][fields[0]][()], ex[cid][fields[1]][()]) for cid in ex}


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(pixels, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def _decode(src: Source):
    def decode(paths: dict[str, Path]) -> dict[str, np.ndarray]:
        train = read_h5_clients(paths[src.files[0]], ("pixels", "label"))
        test = read_h5_clients(paths[src.files[1]], ("pixels", "label"))
        ids = sorted(set(train) | set(test))
        out = {"ids": np.array(ids)}
        empty = (np.zeros((0, 28, 28), np.float32), np.zeros((0,), np.int64))
        for name, split in (("train", train), ("test", test)):
            for c in split:
                check_client(*split[c], 10 if src.files[0].startswith("fed_emnist_digitsonly") else 62,
                             f"{paths[src.files[0 if name == 'train' else 1]]}, client {c}")
            xs = [to_uint8(split.get(c, empty)[0]) for c in ids]
            ys = [np.asarray(split.get(c, empty)[1]).astype(np.uint8).reshape(-1) for c in ids]
            out.update(pack_arrays(name, Packed.from_lists(xs, ys, (28, 28), np.uint8, np.uint8)))
        return out

    return decode


def emnist_inputs(only_digits: bool = False, invert: bool = False) -> ModelInputs:
    return ModelInputs((28, 28), 256, (), 10 if only_digits else 62, inverted_unit_pixels if invert else unit_pixels,
                       {"in_features": 784})


@declares(emnist_inputs)
def load_emnist(
    root: str | None = None,
    cache_dir: str | None = None,
    only_digits: bool = False,
    train_clients: int = 2500,
    heldout_clients: int | None = None,
    invert: bool = False,
    zeta: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> FederatedData:
    src = source(bool(only_digits))
    arrays = decoded(src, "emnist-digits" if only_digits else "emnist-62", _decode(src), root, cache_dir, progress)
    ids = [str(i) for i in arrays["ids"]]
    tr_idx, ho_idx = population_split(len(ids), train_clients, heldout_clients)
    inputs = emnist_inputs(only_digits, invert)
    return inputs.check(assemble(
        "emnist", ids, unpack_arrays("train", arrays), unpack_arrays("test", arrays), tr_idx, ho_idx,
        inputs.num_classes, zeta, seed, input_transform=inputs.transform,
        info=inputs.info(only_digits=bool(only_digits), invert=bool(invert)), augment=CHARACTER_AUGMENT,
    ))
