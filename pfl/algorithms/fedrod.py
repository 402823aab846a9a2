"""FedRoD (Chen & Chao 2022, "On bridging generic and personalized federated learning for image
classification", ICLR), Sec. 4 and Algorithm 1 (the linear personalized head, not the hypernetwork).

The model is a shared body f_θ with a generic head g_ψ (`pfl.models`' `head`); each client also keeps
a personalized head h_φi of the same shape (per-client state). Per minibatch the client takes

- a step on (θ, ψ) with the balanced-softmax loss (Ren et al. 2020; the paper's robust generic loss)
      L_BSM = -log( n_y e^{g_y(z)} / Σ_c n_c e^{g_c(z)} ),   z = f_θ(x),
  n_c the client's count of class c in its training data (absent classes drop out of the sum), and
- a step on φ with the empirical risk of the personalized prediction ŷ = g_ψ(z) + h_φ(z), with z and
  g_ψ(z) held fixed (no gradient reaches θ or ψ from it).

Both are one step of the client optimizer on (θ, ψ, φ) with the loss L_BSM + CE(sg[g(z)] + h_φ(sg[z]), y):
the gradients do not mix, so with SGD this is the paper's two updates at the same learning rate. After
E epochs the client sends (θ, ψ); the server averages by example count (FedAvg). The logged `loss` is
that sum.

The personalized model is g + h: for a linear head, a head with parameters ψ + φ (this module requires
the head to be an nn.Linear). φ starts at 0, so a client's personalized model starts as the generic one
(the paper does not fix φ's initialization; reference ports copy the random initial head).
Personalization: the head ψ + φ trained k epochs with the body fixed (the φ update: ∂L/∂φ = ∂L/∂(ψ+φ)),
from the client's own φ (training clients) or φ = 0 (held-out clients: the generic model). Bytes: the
model both ways (FedAvg's); φ never travels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pfl.algorithms.base import Algorithm, ClientUpdate, LocalEpochs, examples_weight, model_delta
from pfl.algorithms.fedrep import _with_fixed
from pfl.algorithms.head_split import HeadSplit, split_by_prefix
from pfl.config.errors import check

MINE = "personal."  # the personalized head's names inside the client's training dict


def log_class_counts(task, data, classes: int) -> Tensor:
    """log n_c over the client's real training examples (a very negative number where n_c = 0)."""
    y = data.y
    mask = torch.arange(y.shape[0], device=y.device) < data.n
    m = task._counted(y, mask).to(torch.float32)
    onehot = (y.unsqueeze(-1) == torch.arange(classes, device=y.device)).to(torch.float32)
    counts = (onehot * m.unsqueeze(-1)).reshape(-1, classes).sum(0)
    return torch.where(counts > 0, counts.clamp(min=1).log(), torch.full_like(counts, -1e9))


def balanced_softmax_loss(task, logits: Tensor, log_counts: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    """L_BSM: the cross-entropy of logits + log n_c (Ren et al. 2020, Eq. 4)."""
    return task.loss_from_logits(logits + log_counts, y, mask)


@dataclass
class FedRoD(LocalEpochs, Algorithm):

    def init_client_state(self, global_params):
        return {k: torch.zeros_like(v) for k, v in split_by_prefix(global_params)[1].items()}

    def split(self, task) -> HeadSplit:
        hs = HeadSplit(task)
        check(isinstance(hs.module, nn.Linear), "model", type(task.model).__name__,
              "a model whose head is one nn.Linear (FedRoD's personalized model is the head g + h)")
        return hs

    def two_losses(self, task, log_counts):
        hs = self.split(task)

        def loss(p, x, y, mask, key):
            body, generic = hs.split({k: v for k, v in p.items() if not k.startswith(MINE)})
            z = hs.features(body, x, key, mask)
            g = hs.logits(generic, z)
            bsm = balanced_softmax_loss(task, g, log_counts, y, mask)
            h = hs.logits({k[len(MINE):]: v for k, v in p.items() if k.startswith(MINE)}, z.detach())
            return bsm + task.loss_from_logits(g.detach() + h, y, mask)

        return loss

    def client_update(self, local, sent, data, key, state=None):
        hs = self.split(local.task)
        log_counts = log_class_counts(local.task, data, hs.module.out_features)
        start = {**sent, **{MINE + k: v for k, v in state.items()}}
        steps = self.steps(local)
        new, loss = local.train(start, data, key, steps, loss=self.two_losses(local.task, log_counts))
        model = {k: new[k] for k in sent}
        personal = {k: new[MINE + k] for k in state}
        return ClientUpdate(model_delta(sent, model), examples_weight(data), {"loss": loss}, personal)

    def personal_model(self, params, state=None):
        model = self.model_params(params)
        return model if state is None else {k: v + state[k] if k in state else v for k, v in model.items()}

    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        body, head = split_by_prefix(self.personal_model(params, state))
        local.train_by_epoch(head, data, key, epochs, lambda e, h: on_epoch(e, {**body, **h}),
                             loss=_with_fixed(local.task.loss, body))
