"""Personalized vs local-only accuracy per client (the AFML paper's fairness view).

With `personalization.local_baseline=true`, every evaluated held-out client
also trains a model alone, from the initial model, for
`personalization.local_epochs` epochs of SGD(`local_lr`) (the `local`
algorithm's personalization): Acc_local. A client "beats local" after k
personalization epochs when its personalized accuracy is strictly higher.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path

import torch
from torch import Tensor

from pfl.algorithms.local import LocalTrainer
from pfl.data.federated import Population
from pfl.evaluation.personalize import PersonalizationResult, personalize
from pfl.task import Params

CACHE_VERSION = 2  # bump when local training changes (2: the population's personalization key)


def _fingerprint(*parts) -> str:
    """A hash of the things Acc_local depends on (tensors by content)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Tensor):
            t = p.detach().cpu().contiguous()
            h.update(str((t.dtype, tuple(t.shape))).encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(p, dict):
            for k in sorted(p):
                h.update(k.encode())
                h.update(_fingerprint(p[k]).encode())
        else:
            h.update(repr(p).encode())
    return h.hexdigest()[:20]


def local_reference(
    local: LocalTrainer,
    init: Params,
    population: Population,
    clients: Tensor,
    epochs: int,
    lr: float,
    key: Tensor,
    backend,
    chunk_size: int | None,
    cache_dir: str | os.PathLike | None = None,
    progress=None,
) -> Tensor:
    """[C] Acc_local: each client trains `epochs` epochs of SGD(lr) from `init`
    on its own training data (the `local` algorithm), tested on its test data.

    It depends only on the data, the initial model and these settings, so with
    `cache_dir` the result is stored under a hash of exactly those (data and
    parameters by content) and reused by later runs, e.g. every algorithm of
    a ζ sweep at one seed."""
    from pfl.algorithms.local_only import LocalOnly

    path = None
    if cache_dir is not None:
        tag = _fingerprint(CACHE_VERSION, init, population.train.x, population.train.y, population.train.counts,
                           population.test.x, population.test.y, population.test.counts, clients, epochs, lr,
                           key, local.batch_size, type(local.opt).__name__, local.task.ignore_index)
        path = Path(cache_dir) / f"local_reference_{tag}.pt"
        if path.is_file():
            return torch.load(path)
    ref = LocalOnly(epochs=epochs, lr=lr)
    res = personalize(ref, local, init, population, clients, epochs, key, backend, chunk_size, progress)
    acc = res.accuracy[:, -1]
    if path is not None:
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(acc, tmp)
            os.replace(tmp, path)
        except OSError as exc:  # the cache is optional: an unwritable PFL_CACHE costs a recomputation next time
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            logging.getLogger("pfl").warning("local reference not cached in %s (%s); it is recomputed next time",
                                             path.parent, exc.strerror or exc)
    return acc


def beats_local(res: PersonalizationResult, epochs: list[int]) -> dict[str, float]:
    """{str(k): fraction of clients with test data whose accuracy after k epochs > Acc_local}."""
    if res.local_accuracy is None:
        return {}
    valid = res.num_test > 0
    acc = res.accuracy[valid]
    local = res.local_accuracy[valid].to(acc.dtype)
    if len(acc) == 0:
        return {}
    return {str(k): float((acc[:, k] > local).double().mean()) for k in epochs if k < acc.shape[1]}


def scatter_plot(res: PersonalizationResult, k: int, path: Path, title: str = "") -> Path | None:
    """Personalized accuracy after k epochs (y) against Acc_local (x), one point per client."""
    if res.local_accuracy is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    valid = res.num_test > 0
    x = res.local_accuracy[valid].numpy()
    y = res.accuracy[valid, k].numpy()
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(x, y, s=12, alpha=0.7)
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    ax.set_xlabel("local-only accuracy")
    ax.set_ylabel(f"personalized accuracy (k={k})")
    frac = float((res.accuracy[valid, k] > res.local_accuracy[valid].to(res.accuracy.dtype)).double().mean())
    ax.set_title(f"{title} beats local: {frac:.2f}".strip(), fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
