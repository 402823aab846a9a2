"""LG-FedAvg (Liang, Liu, Ziyin, Allen, Auerbach, Brent, Salakhutdinov,
Morency 2020, "Think locally, act globally: Federated learning with local and
global representations", arXiv:2001.01523), Algorithm 1.

The opposite split of FedPer: each client keeps a local representation (the
body, per-client state: the model's initial body at the start, checkpointed)
and the head (the model's `head`) is global. Each round the server sends the
head; a client trains its own body and the head jointly for E epochs of the
client optimizer and sends back only the head, Δ = head^t - head_k (weighted
by example count, averaged as in FedAvg). The server's body is never updated.

Bytes: the head both ways. Personalization: a training client is its own
body with the global head (k = 0 evaluates that) and continues the same local
training for k epochs; a held-out client has no local representation and
starts from the model's initial body (the server's, never trained) with the
global head, then trains both — a new device learning its local
representation. (The paper also evaluates new devices with an ensemble of
the training clients' local models; that is not implemented here.)
"""

from __future__ import annotations

from dataclasses import dataclass

from pfl.algorithms.split_sharing import SplitSharing


@dataclass
class LGFedAvg(SplitSharing):
    personal = "body"  # the head is shared, the body personal
