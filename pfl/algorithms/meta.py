"""Pieces shared by the meta-learning algorithms (FedMeta, Per-FedAvg, AFML).

- `split_support_query`: a client's examples in a random order (drawn from
  the round's client key, so a new split every round), the first fraction P
  the support set, the rest the query set; both are `ClientData` views of the
  same padded width, so they work under vmap like any client data.
- `sample_batch`: a random minibatch of a client's data (or all of it).
"""

from __future__ import annotations

import torch
from torch import Tensor

from pfl import rng
from pfl.data.federated import ClientData
from pfl.task import Params


def split_support_query(data: ClientData, key: Tensor, fraction: float) -> tuple[ClientData, ClientData]:
    """(support, query): round(P·n) support examples, clamped to [1, n-1] when n >= 2."""
    size = data.x.shape[0]
    order = rng.permutation(key, data.n, size)
    n_support = torch.round(fraction * data.n.to(torch.float32)).to(data.n.dtype)
    n_support = torch.minimum(n_support.clamp(min=1), (data.n - 1).clamp(min=1))
    pos = torch.arange(size, device=data.x.device)
    q_idx = order[(pos + n_support).clamp(max=size - 1)]
    support = ClientData(data.x[order], data.y[order], n_support, data.aug)
    query = ClientData(data.x[q_idx], data.y[q_idx], (data.n - n_support).clamp(min=0), data.aug)
    return support, query


def sample_batch(data: ClientData, key: Tensor, batch_size: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """(x, y, mask): `batch_size` random examples without replacement (fewer if
    the client has fewer), or all examples when batch_size is None."""
    size = data.x.shape[0]
    if batch_size is None:
        mask = torch.arange(size, device=data.x.device) < data.n
        return data.x, data.y, mask
    # real examples first in a key-determined order: row i holds the same example
    # whatever the padding (vmap chunk) width, so dropout masks agree across backends
    width = min(batch_size, size)
    idx = rng.permutation(key, data.n, size)[:width]
    mask = torch.arange(width, device=data.x.device) < data.n
    return data.x[idx], data.y[idx], mask


def sgd(params: Params, grads: Params, lr) -> Params:
    """One gradient step; `lr` a number or a dict of per-parameter rates (Meta-SGD)."""
    if isinstance(lr, dict):
        return {k: params[k] - lr[k] * grads[k] for k in params}
    return {k: params[k] - lr * grads[k] for k in params}

