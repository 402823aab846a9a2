"""FedAS (Yang, Huang, Ye 2024, "FedAS: Bridging inconsistency in personalized federated learning",
CVPR), Sec. 3: federated parameter alignment and client synchronization.

The model is a shared body φ and a head h (`pfl.models`' `head`). Each client keeps its whole local
model (φ_i, h_i) (per-client state, the initial model at the start, checkpointed). In round t client i

1. parameter alignment: computes class prototypes of its local body, P_c = mean_{y=c} φ_i(x) over its
   training data, and trains the received global body φ^t to reproduce them,
       min_φ  Σ_{c in the batch} MSE(φ(x_{y=c}), P_c)
   for `align_epochs` epochs of SGD with step `align_lr`; its body becomes the aligned φ;
2. trains (aligned φ, h_i) for E epochs with the client optimizer (cross-entropy) and keeps the result;
3. client synchronization: computes the trace of its empirical Fisher information at the trained model,
   F_i = Σ_batches ‖∇ (-log p(y|x))‖² over one pass of its training data in client batches, and sends
   its body with weight F_i: the server's body is the F-weighted mean of the bodies (Δ = φ^t - φ_i,
   weights F_i / Σ_j F_j), so clients whose parameters carry less information count less.

Defaults: `align_lr` 0.01 and `align_epochs` 1 (the authors' released code; the paper gives no
numbers). Bytes: the body both ways (the weight F_i is a scalar, not counted, as example counts are
not). Personalization: a training client is its own local model (k = 0) and continues local training
of body and head for k epochs; a held-out client has none and starts from the global body with the
model's initial head (the server's, never trained), trained the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import grad

from pfl import rng
from pfl.algorithms.base import Algorithm, ClientUpdate, LocalEpochs, model_delta
from pfl.algorithms.head_split import HeadSplit, split_by_prefix
from pfl.optim import ClientSGD
from pfl.config.settings import integer, number, setting


def class_means(z, y, mask, classes: int):
    """(P [classes, d], present [classes]): the mean of z over the masked rows of each class."""
    onehot = ((y.unsqueeze(-1) == torch.arange(classes, device=y.device)) & mask.unsqueeze(-1)).to(z.dtype)
    counts = onehot.sum(0)
    return (onehot.T @ z) / counts.clamp(min=1).unsqueeze(-1), counts > 0


@dataclass
class FedAS(LocalEpochs, Algorithm):
    align_epochs: int = setting(1, integer(ge=0))  # epochs of parameter alignment (0: none)
    align_lr: float = setting(0.01, number(gt=0))  # SGD step of the alignment

    def init_client_state(self, global_params):
        return {k: v.detach().clone() for k, v in global_params.items()}

    def broadcast(self, global_params, key, server_state):
        return split_by_prefix(global_params)[0]

    def alignment_loss(self, hs: HeadSplit, protos, present):
        """Σ_c MSE(φ(x_{y=c}), P_c) over the classes of the batch (the reference's per-class MSE)."""
        def loss(body, x, y, mask, key):
            z = hs.features(body, x, None, mask)
            per_row = ((z - protos[y.clamp(min=0)]) ** 2).mean(-1)
            onehot = ((y.unsqueeze(-1) == torch.arange(protos.shape[0], device=y.device)) & mask.unsqueeze(-1))
            onehot = (onehot & present).to(z.dtype)
            per_class = (onehot * per_row.unsqueeze(-1)).sum(0) / onehot.sum(0).clamp(min=1)
            return per_class.sum()
        return loss

    def align(self, local, sent, own, data, key):
        """The global body φ^t trained to the client's own class prototypes (step 1)."""
        hs = HeadSplit(local.task)
        x, y, mask = local.full_batch(data)
        own_body = split_by_prefix(own)[0]
        protos, present = class_means(hs.features(own_body, x, None, mask), y, mask, hs.module.out_features)
        sgd = local.with_opt(ClientSGD(lr=self.align_lr, batch_size=local.batch_size))
        steps = lambda n: self.align_epochs * local.batches_per_epoch(n)  # noqa: E731
        body, _ = sgd.train(sent, data, key, steps, loss=self.alignment_loss(hs, protos.detach(), present))
        return body

    def fisher_trace(self, local, params, data, key):
        """Σ over one pass of client batches of ‖∇ NLL‖² (the empirical Fisher information's trace)."""
        def step(total, s):
            x, y, mask = local.batch(data, key, torch.as_tensor(s, device=data.x.device))
            g = grad(local.task.loss)(params, x, y, mask, None)
            return total + sum((v ** 2).sum() for v in g.values())

        zero = torch.zeros((), device=data.x.device)
        return local.steps_loop(data)(zero, step, local.batches_per_epoch, data.n)

    def client_update(self, local, sent, data, key, state=None):
        body = self.align(local, sent, state, data, rng.fold(key, 0xA116)) if self.align_epochs else sent
        head = split_by_prefix(state)[1]
        steps = self.steps(local)
        new, loss = local.train({**body, **head}, data, key, steps)
        fisher = self.fisher_trace(local, new, data, rng.fold(key, 0xF15))
        shared = split_by_prefix(new)[0]
        return ClientUpdate(model_delta(sent, shared), fisher.detach(), {"loss": loss, "fisher_trace": fisher}, new)

    def personal_model(self, params, state=None):
        return self.model_params(params) if state is None else dict(state)

    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        local.train_by_epoch(self.personal_model(params, state), data, key, epochs, on_epoch)

