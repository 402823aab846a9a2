"""CIFAR-100 split over clients with Dirichlet label skew (the AFML setting).

Source: the python version, `cifar-100-python.tar.gz` (md5 published on
www.cs.toronto.edu/~kriz/cifar.html), pickles `train` (50,000) and `test`
(10,000) holding `data` uint8 [N, 3072] (channel-major 3x32x32) and
`fine_labels` (0-99). The pickles are opened only after their own md5
matches, with an unpickler that accepts nothing but numpy arrays and plain
containers.

Clients: `num_clients` (100) clients draw class proportions from
Dirichlet(`alpha`=0.5); each class's training images are dealt in proportion
to them, and its test images with the same proportions, so a client's test
labels follow its training label distribution (about 500 train and 100 test
images per client). The first `train_clients` (80) train, the next
`heldout_clients` (null: the other 20) are held out. The partition depends on
`seed`; ζ permutes labels on top (pfl.data.packed.assemble).
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Annotated

import numpy as np

from pfl.data.cache import Source, decoded
from pfl.data.download import DataError, Remote
from pfl.data.augment import RandomCropFlip
from pfl.data.federated import FederatedData
from pfl.data.validate import check_client
from pfl.data.packed import Packed, assemble, population_split
from pfl.data.partition import dirichlet_label_skew_paired
from pfl.data.inputs import ModelInputs, declares
from pfl.data.transforms import cifar_pixels
from pfl.config.settings import checked, integer, number

ARCHIVE = Remote("cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                 md5="eb9058c3a382ffc7106e4002c42a8d85")
# md5 of the pickles inside the archive (as listed by torchvision's CIFAR100 loader)
SOURCE = Source("cifar100", ("train", "test"), ARCHIVE,
                file_md5={"train": "16019d7e3df5f24257cddd939b257f8d", "test": "f0ef6b0ae62326f3e7ffdfab6717acfc"},
                subdirs=("cifar-100-python",))


try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
    from numpy._core.multiarray import scalar as _scalar
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct
    from numpy.core.multiarray import scalar as _scalar


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, dicts, lists, bytes and numbers; refuses any other global."""

    def find_class(self, module: str, name: str):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
            return _reconstruct if name == "_reconstruct" else _scalar
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # bytes in protocol-2 pickles written by Python 3
            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data pickle")


def read_pickle(path: Path) -> dict:
    try:
        obj = _ArrayUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise DataError(f"{path} is not a CIFAR-100 pickle ({exc})") from None
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _decode(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    out = {}
    for name in ("train", "test"):
        d = read_pickle(paths[name])
        check_client(d["data"], d["fine_labels"], 100, str(paths[name]))
        x = np.asarray(d["data"], dtype=np.uint8)
        y = np.asarray(d["fine_labels"], dtype=np.uint8)
        if x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
            raise DataError(f"{paths[name]}: expected data [N, 3072] and N fine_labels, got {x.shape} and {len(y)}")
        out[f"{name}_x"] = x.reshape(-1, 3, 32, 32)
        out[f"{name}_y"] = y
    return out


def cifar_inputs() -> ModelInputs:
    return ModelInputs((3, 32, 32), 256, (), 100, cifar_pixels, {"in_channels": 3, "in_features": 3072})


@declares(cifar_inputs)
@checked("dataset")
def load_cifar100(
    root: str | None = None,
    cache_dir: str | None = None,
    num_clients: Annotated[int, integer(ge=2)] = 100,
    train_clients: int = 80,
    heldout_clients: int | None = None,
    alpha: Annotated[float, number(gt=0)] = 0.5,  # Dirichlet concentration (smaller: stronger label skew)
    zeta: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> FederatedData:
    arrays = decoded(SOURCE, "cifar100", _decode, root, cache_dir, progress)
    tr_idx, ho_idx = population_split(num_clients, train_clients, heldout_clients)
    rng = np.random.default_rng([seed, 0xC1FA])
    try:
        tr_parts, te_parts = dirichlet_label_skew_paired(arrays["train_y"], arrays["test_y"], num_clients, alpha, rng)
    except ValueError as exc:
        raise DataError(str(exc), key="dataset.num_clients") from None
    train = Packed.from_lists([arrays["train_x"][p] for p in tr_parts], [arrays["train_y"][p] for p in tr_parts])
    test = Packed.from_lists([arrays["test_x"][p] for p in te_parts], [arrays["test_y"][p] for p in te_parts])
    ids = [f"cifar100_{i:04d}" for i in range(num_clients)]
    inputs = cifar_inputs()
    return inputs.check(assemble(
        "cifar100", ids, train, test, tr_idx, ho_idx, inputs.num_classes, zeta, seed,
        input_transform=inputs.transform, info=inputs.info(alpha=alpha),
        augment=RandomCropFlip(pad=4),  # for the ζ-permuted clients (the AFML paper's augmentation)
    ))
