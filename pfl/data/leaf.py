"""LEAF json data sets (Caldas et al. 2018): FEMNIST and Shakespeare.

LEAF's preprocessing writes `<root>/train/*.json` and `<root>/test/*.json`,
each shard `{"users": [...], "num_samples": [...], "user_data": {uid: {"x":
[...], "y": [...]}}}`. A user's examples may be spread over shards; shards
may be missing (a sample of the data set), so train and test are paired by
user and users missing either side are dropped. Paired users in sorted id
order: the first `train_clients` train, the next `heldout_clients` (null:
the rest) are held out. There is no canonical download (LEAF generates the
files from raw sources), so `dataset.root` is required; the decoded arrays
are cached, keyed by the json files' sizes and modification times.

- FEMNIST: x = 784 floats in [0, 1] (1.0 = background, as TFF's EMNIST),
  y = 0-61. Stored as uint8 28x28; the EMNIST CNN is the default model;
  `invert: true` feeds 1 - pixel (see pfl.data.emnist).
- Shakespeare: x = 80-character strings, y = the next character. Encoded
  with TFF's vocabulary (pfl.data.text, 90 ids) so the char-LSTM is shared;
  the model predicts from its last position (`last_only`), and accuracy is
  the fraction of next characters predicted right.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pfl.data import text
from pfl.data.cache import cache_root, fingerprint_files
from pfl.data.download import DataError, load_npz, save_cache_npz
from pfl.data.emnist import to_uint8
from pfl.data.augment import CHARACTER_AUGMENT
from pfl.data.federated import FederatedData
from pfl.data.packed import Packed, assemble, pack_arrays, population_split, unpack_arrays
from pfl.data.validate import check_client
from pfl.data.inputs import ModelInputs, declares
from pfl.data.transforms import inverted_unit_pixels, token_ids, unit_pixels

FORMAT = 2  # 2: examples validated before encoding (pfl.data.validate); older caches may hold NaN as 0


def read_leaf_split(directory: Path, shards_of: dict[str, list[str]] | None = None) -> dict[str, tuple[list, list]]:
    """{user: (xs, ys)} merged over the json shards of one split folder; `shards_of[user]`: the shard files
    that hold the user's examples (for error messages)."""
    users: dict[str, tuple[list, list]] = {}
    for shard in sorted(directory.glob("*.json")):
        try:
            with open(shard) as f:
                d = json.load(f)
            for uid, ex in d["user_data"].items():
                xs, ys = users.setdefault(str(uid), ([], []))
                if not isinstance(ex["x"], list) or not isinstance(ex["y"], list):
                    raise TypeError(f"user {uid}: x and y must be lists")
                xs.extend(ex["x"])
                ys.extend(ex["y"])
                if shards_of is not None:
                    shards_of.setdefault(str(uid), []).append(str(shard))
        except (ValueError, KeyError, OSError, TypeError, AttributeError) as exc:  # JSONDecodeError is a ValueError
            raise DataError(f"{shard} is not a LEAF json shard ({type(exc).__name__}: {exc}); expected "
                            '{"users": [...], "user_data": {user: {"x": [...], "y": [...]}}}') from None
    return users


def _shards(root: Path) -> list[Path]:
    if root is None:
        raise DataError("LEAF data sets have no download: set dataset.root to the folder holding train/ and test/ "
                        "(the output of LEAF's preprocess.sh)", key="dataset.root")
    root = Path(root).expanduser()
    shards = [sorted((root / s).glob("*.json")) for s in ("train", "test")]
    if not shards[0] or not shards[1]:
        raise DataError(f"dataset.root={root} must hold train/*.json and test/*.json (LEAF's output)", key="dataset.root")
    return shards[0] + shards[1]


def _cached_leaf(kind: str, root, cache_dir, encode, num_classes: int) -> dict[str, np.ndarray]:
    shards = _shards(root)
    npz = cache_root(cache_dir) / f"{kind}_leaf" / f"{kind}-{fingerprint_files(shards)}-v{FORMAT}.npz"
    arrays = load_npz(npz)
    if arrays is not None:
        return arrays
    root = Path(root).expanduser()
    where: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    train, test = read_leaf_split(root / "train", where["train"]), read_leaf_split(root / "test", where["test"])
    ids = sorted(set(train) & set(test))
    if len(ids) < 2:
        raise DataError(f"dataset.root={root}: only {len(ids)} users have both train and test data", key="dataset.root")
    arrays = {"ids": np.array(ids), "unpaired": np.array([len(set(train) ^ set(test))])}
    for name, split in (("train", train), ("test", test)):
        for u in ids:
            check_client(*_raw(kind, split[u]), num_classes, f"{' / '.join(where[name][u])}, client {u}")
        try:
            xs, ys = zip(*(encode(*split[u]) for u in ids))
        except (ValueError, TypeError, IndexError) as exc:  # examples of another shape or type
            raise DataError(f"dataset.root={root}: the {name} examples are not {kind} examples "
                            f"({type(exc).__name__}: {exc})", key="dataset.root") from None
        arrays.update(pack_arrays(name, Packed.from_lists(xs, ys)))
    save_cache_npz(npz, **arrays)
    return arrays


def _raw(kind: str, examples: tuple[list, list]) -> tuple:
    """(features, labels) of a user's json lists as the validator reads them: FEMNIST's are numbers,
    Shakespeare's characters (their ids, always in range, are checked after encoding)."""
    xs, ys = examples
    if kind == "femnist":
        return xs, ys
    return np.zeros(len(xs)), np.zeros(len(ys), np.int64)


def _femnist_encode(xs: list, ys: list) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(xs, dtype=np.float32).reshape(-1, 28, 28)
    return to_uint8(x), np.asarray(ys, dtype=np.uint8).reshape(-1)


def _shakespeare_encode(xs: list, ys: list) -> tuple[np.ndarray, np.ndarray]:
    width = len(xs[0]) if xs else 80
    x = np.stack([text.encode_chars(s) for s in xs]) if xs else np.zeros((0, width), np.uint8)
    y = np.concatenate([text.encode_chars(c[:1]) for c in ys]) if ys else np.zeros((0,), np.uint8)
    return x, y


def _load(kind, encode, root, cache_dir, train_clients, heldout_clients, zeta, seed, inputs: ModelInputs,
          **kw) -> FederatedData:
    arrays = _cached_leaf(kind, root, cache_dir, encode, inputs.num_classes)
    ids = [str(i) for i in arrays["ids"]]
    tr_idx, ho_idx = population_split(len(ids), train_clients, heldout_clients)
    info = inputs.info(**kw.pop("info", {}), unpaired_users_dropped=int(arrays["unpaired"][0]),
                       source=str(Path(root).expanduser()))
    return inputs.check(assemble(f"{kind}_leaf", ids, unpack_arrays("train", arrays), unpack_arrays("test", arrays),
                                 tr_idx, ho_idx, inputs.num_classes, zeta, seed, input_transform=inputs.transform,
                                 info=info, **kw))


def femnist_inputs(invert: bool = False) -> ModelInputs:
    return ModelInputs((28, 28), 256, (), 62, inverted_unit_pixels if invert else unit_pixels, {"in_features": 784})


def shakespeare_inputs() -> ModelInputs:
    """The next character of an 80-character window (LEAF's task)."""
    return ModelInputs((80,), text.VOCAB_SIZE, (), text.VOCAB_SIZE, token_ids,
                       {"vocab_size": text.VOCAB_SIZE, "last_only": True})


@declares(femnist_inputs)
def load_femnist_leaf(
    root: str | None = None,
    cache_dir: str | None = None,
    train_clients: int = 80,
    heldout_clients: int | None = None,
    invert: bool = False,
    zeta: float = 1.0,
    seed: int = 0,
) -> FederatedData:
    return _load("femnist", _femnist_encode, root, cache_dir, train_clients, heldout_clients, zeta, seed,
                 femnist_inputs(invert), augment=CHARACTER_AUGMENT, info={"invert": bool(invert)})


@declares(shakespeare_inputs)
def load_shakespeare_leaf(
    root: str | None = None,
    cache_dir: str | None = None,
    train_clients: int = 500,
    heldout_clients: int | None = None,
    zeta: float = 1.0,
    seed: int = 0,
) -> FederatedData:
    return _load("shakespeare", _shakespeare_encode, root, cache_dir, train_clients, heldout_clients, zeta, seed,
                 shakespeare_inputs(), fixed_labels=text.SPECIAL)
