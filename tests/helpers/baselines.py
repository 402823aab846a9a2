"""One round of an algorithm with broadcast and per-client state, and the backend comparison, for the baseline tests."""

import torch
from torch import nn
from torch.utils._pytree import tree_leaves, tree_map

from pfl import rng
from pfl.engine.round import client_updates
from pfl.execution import Backend


def stacked_state(alg, params, num):
    """`num` rows of the algorithm's initial client state (None: stateless)."""
    s = alg.init_client_state(params)
    return None if s is None else {k: v.unsqueeze(0).repeat(num, *[1] * v.dim()) for k, v in s.items()}


def updates(alg, local, params, data, backend="sequential", state=None, server_state=None, key_seed=0):
    """The cohort's ClientUpdate for what `alg.broadcast` sends; `state` stacked per client."""
    server_state = alg.init_server_state(params) if server_state is None else server_state
    sent = alg.broadcast(params, rng.key(key_seed, 0x5E4D), server_state)
    keys = torch.stack([rng.key(key_seed, i) for i in range(len(data.n))])
    return client_updates(alg, local, Backend(backend), sent, data, keys, state)


def assert_backends_agree(alg, local, params, data, state=None, server_state=None):
    a = updates(alg, local, params, data, "vmap", state, server_state)
    b = updates(alg, local, params, data, "sequential", state, server_state)
    for x, y in zip(tree_leaves(a), tree_leaves(b)):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    return a


def full_batch_grad(task, params, x, y):
    """∇ of the mean cross-entropy on (x, y), by hand (torch.func.grad of the model's logits)."""
    return torch.func.grad(lambda p: nn.functional.cross_entropy(task.logits(p, x), y))(params)


def perturbed(params, seed, scale=0.1):
    """`params` plus fixed noise (a state different from the global model)."""
    g = torch.Generator().manual_seed(seed)
    return tree_map(lambda t: t + scale * torch.randn(t.shape, generator=g), params)
