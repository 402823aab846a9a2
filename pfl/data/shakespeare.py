"""TensorFlow Federated's Shakespeare: next-character prediction, 715 speakers.

Files `shakespeare_{train,test}.h5` (archive `shakespeare.tar.bz2`), layout
`/examples/<client_id>/snippets` (byte strings); 16,068 train and 2,356 test
snippets. Every speaking role is a client with its own train and test
snippets. Clients in sorted id order: the first `train_clients` (500) train,
the next `heldout_clients` (null: the other 215) are held out.

Snippets become rows of `seq_len` (80) input ids and the next character at
every position (pfl.data.text: TFF's vocabulary of 86 characters plus pad,
OOV, BOS and EOS = 90 ids). An example is one row.

**What counts in accuracy (and in the loss):** every target position that is
not padding, i.e. each real next character, including targets that are OOV
(characters outside the vocabulary) and the EOS that ends each snippet; BOS
is never a target. Padding (id 0) never counts (`ignore_index=0`). With
`score_special: false`, OOV and EOS targets are turned into padding too, so
only in-vocabulary characters count. Accuracy per client is correct / counted
positions over its test rows; means over clients are uniform.

ζ: a (1-ζ) fraction of clients permutes the 86 character ids of its targets
(pad/OOV/BOS/EOS fixed); `permute_inputs: true` also maps the input
characters, so the client writes in a consistent cipher.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import h5py
import numpy as np

from pfl.data import text
from pfl.data.cache import Source, decoded
from pfl.data.download import Remote
from pfl.data.federated import FederatedData
from pfl.data.packed import Packed, assemble, pack_arrays, population_split, unpack_arrays
from pfl.data.inputs import ModelInputs, declares
from pfl.data.transforms import token_ids
from pfl.config.settings import checked, integer

TFF_URL = "https://storage.googleapis.com/tff-datasets-public/"
# sha256 published in TFF's loader (tff.simulation.datasets.shakespeare.load_data)
ARCHIVE = Remote("shakespeare.tar.bz2", TFF_URL + "shakespeare.tar.bz2",
                 sha256="0285be9906cb5f268092eee4edeeacfc2af4574f2941f7cc2f08a321d7f5c707")
SOURCE = Source("shakespeare", ("shakespeare_train.h5", "shakespeare_test.h5"), ARCHIVE)


def read_snippets(path: Path) -> dict[str, list[bytes]]:
    """{client_id: [snippet bytes]} of one TFF Shakespeare h5 file."""
    with h5py.File(path, "r") as f:
        ex = f["examples"]
        return {cid: [bytes(s) for s in ex[cid]["snippets"][()]] for cid in ex}


def _decode(seq_len: int):
    def decode(paths: dict[str, Path]) -> dict[str, np.ndarray]:
        train = read_snippets(paths["shakespeare_train.h5"])
        test = read_snippets(paths["shakespeare_test.h5"])
        ids = sorted(set(train) | set(test))
        out = {"ids": np.array(ids), "snippets": np.array([[len(train.get(c, [])), len(test.get(c, []))] for c in ids])}
        for name, split in (("train", train), ("test", test)):
            xs, ys = [], []
            for cid in ids:
                rows = [text.snippet_rows(s, seq_len) for s in split.get(cid, [])]
                xs.append(np.concatenate([r[0] for r in rows]) if rows else np.zeros((0, seq_len), np.uint8))
                ys.append(np.concatenate([r[1] for r in rows]) if rows else np.zeros((0, seq_len), np.uint8))
            out.update(pack_arrays(name, Packed.from_lists(xs, ys)))
        return out

    return decode


def shakespeare_inputs(seq_len: int = 80) -> ModelInputs:
    return ModelInputs((seq_len,), text.VOCAB_SIZE, (seq_len,), text.VOCAB_SIZE, token_ids, {"vocab_size": text.VOCAB_SIZE})


@declares(shakespeare_inputs)
@checked("dataset")
def load_shakespeare(
    root: str | None = None,
    cache_dir: str | None = None,
    train_clients: int = 500,
    heldout_clients: int | None = None,
    seq_len: Annotated[int, integer(ge=2)] = 80,
    score_special: bool = True,
    permute_inputs: bool = False,
    zeta: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> FederatedData:
    arrays = decoded(SOURCE, f"shakespeare-seq{seq_len}", _decode(seq_len), root, cache_dir, progress)
    ids = [str(i) for i in arrays["ids"]]
    train, test = unpack_arrays("train", arrays), unpack_arrays("test", arrays)
    if not score_special:
        train, test = (Packed(p.x, np.where(np.isin(p.y, (text.OOV, text.EOS)), text.PAD, p.y).astype(p.y.dtype), p.counts)
                       for p in (train, test))
    tr_idx, ho_idx = population_split(len(ids), train_clients, heldout_clients)
    inputs = shakespeare_inputs(seq_len)
    data = assemble(
        "shakespeare", ids, train, test, tr_idx, ho_idx, inputs.num_classes, zeta, seed,
        fixed_labels=text.SPECIAL, input_transform=inputs.transform, ignore_index=text.PAD,
        info=inputs.info(seq_len=seq_len, snippets={"train": int(arrays["snippets"][:, 0].sum()),
                                                    "test": int(arrays["snippets"][:, 1].sum())}),
    )
    if permute_inputs and zeta < 1.0:
        _permute_inputs(data)
    return inputs.check(data)


def _permute_inputs(data: FederatedData) -> None:
    """Map each permuting client's input ids through its label map too."""
    import torch

    for pop_name in ("train", "heldout"):
        pop = getattr(data, pop_name)
        maps = data.info["label_maps"][pop_name]
        for split in (pop.train, pop.test):
            owner = torch.repeat_interleave(torch.arange(len(split.counts)), split.counts)
            split.x = maps[owner.unsqueeze(1), split.x.long()].to(split.x.dtype)
