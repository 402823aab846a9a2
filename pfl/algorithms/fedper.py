"""FedPer (Arivazhagan, Aggarwal, Singh, Choudhary 2019, "Federated learning
with personalization layers", arXiv:1912.00818), Sec. 3 / Algorithm 1.

The model is base layers (the body, shared) and personalization layers (the
head, the model's `head`, kept on the client). Each round the server sends the
body; a client trains body and its own head jointly for E epochs of the client
optimizer (FedAvg's local training) and sends back only the body,
Δ = body^t - body_k (weighted by example count); the head stays on the client
(per-client state, the model's initial head at the start, checkpointed). The
server's head is never updated (no Δ is sent for it).

Bytes: the body both ways. Personalization: a training client is the global
body with its own head (k = 0 evaluates that) and continues FedPer's local
training of body and head for k epochs; a held-out client has no head of its
own and starts from the global body with the model's initial head (the
server's, never trained) — what a newly joining FedPer client holds — then
trains body and head the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from pfl.algorithms.split_sharing import SplitSharing


@dataclass
class FedPer(SplitSharing):
    personal = "head"  # the body is shared, the head personal
