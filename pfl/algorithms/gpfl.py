"""GPFL (Zhang, Hua, Wang, Song, Xue, Ma, Cao, Guan 2023, "GPFL: Simultaneously learning global and
personalized feature information for personalized federated learning", ICCV), Sec. 4.

The model is a feature extractor φ (the body, shared) and a head (`pfl.models`' `head`, personal).
GPFL adds two shared modules: a global category embedding GCE (one d-vector e_c per class) and a
conditional valve CoV, which turns a feature f into f ⊙ (γ(c) + 1) + β(c) followed by ReLU, with
γ, β = LayerNorm(ReLU(Linear(c))) of a conditional input c. Each round client i takes from the
received GCE the generic input g = mean_c e_c and its personalized input p_i = Σ_c (n_c / n) e_c, and
trains (φ, GCE, CoV, its head) for E epochs of the client optimizer on

    L_i = CE(head(f^P), y) + L_angle + λ ‖f^G - ē_y‖_2 + (μ/2)(‖GCE‖² + ‖CoV‖²),
    f = φ(x),  f^P = CoV(f, p_i),  f^G = CoV(f, g),
    L_angle = CE over the cosines cos(f^G, e_c) (the angle-level guidance),

ē the received (frozen) embeddings and ‖·‖_2 the norm of the batch's stacked differences (the
magnitude-level guidance). It sends φ, GCE and CoV; the server averages them by example count
(FedAvg); the head stays on the client (per-client state with its class proportions n_c / n; uniform
proportions, p = g, before its first round).

The personalized predictor is head(CoV(φ(x), p_i)): not the task's model, so GPFL overrides
`Algorithm.evaluate`. Defaults λ = 0.01, μ = 0.1: the authors' released command for CNNs and MLPs.
GCE starts N(0, 1) and CoV's linear layers as torch's nn.Linear (global RNG, seeded by the run).
Bytes: φ, GCE and CoV both ways. Personalization: the head trained k epochs on CE(head(f^P)) with the
rest fixed; a held-out client starts from the model's initial head with the generic input g.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from pfl.algorithms.base import Algorithm, ClientUpdate, LocalEpochs, examples_weight, model_delta
from pfl.algorithms.head_split import HeadSplit, linear_head_weight, split_by_prefix
from pfl.config.settings import number, setting

GCE, P, PROPS = "gpfl.gce", "gpfl.p", "gpfl.props"


def valve(params, f: Tensor, ctx: Tensor) -> Tensor:
    """CoV(f, c) = ReLU(f ⊙ (γ(c) + 1) + β(c)), γ/β = LayerNorm(ReLU(Linear(c)))."""
    def cond(name):
        h = F.linear(ctx, params[f"gpfl.{name}.weight"], params[f"gpfl.{name}.bias"]).relu()
        return F.layer_norm(h, h.shape[-1:], params[f"gpfl.{name}.ln_weight"], params[f"gpfl.{name}.ln_bias"])
    return (f * (cond("gamma") + 1) + cond("beta")).relu()


def class_proportions(data, classes: int) -> Tensor:
    mask = torch.arange(data.y.shape[0], device=data.y.device) < data.n
    onehot = ((data.y.unsqueeze(-1) == torch.arange(classes, device=data.y.device)) & mask.unsqueeze(-1)).float()
    return onehot.sum(0) / onehot.sum().clamp(min=1)


@dataclass
class GPFL(LocalEpochs, Algorithm):
    lam: float = setting(0.01, number(ge=0))  # λ: magnitude-level guidance
    mu: float = setting(0.1, number(ge=0))  # μ: L2 regularization of GCE and CoV

    def init_global(self, model_params):
        w = linear_head_weight(model_params)
        (c, d), b = w.shape, 1 / math.sqrt(w.shape[1])
        extra = {GCE: torch.randn(c, d, device=w.device)}
        for name in ("gamma", "beta"):
            extra.update({f"gpfl.{name}.weight": torch.empty(d, d, device=w.device).uniform_(-b, b),
                          f"gpfl.{name}.bias": torch.empty(d, device=w.device).uniform_(-b, b),
                          f"gpfl.{name}.ln_weight": torch.ones(d, device=w.device),
                          f"gpfl.{name}.ln_bias": torch.zeros(d, device=w.device)})
        return {**model_params, **extra}

    def model_params(self, global_params):
        return {k: v for k, v in global_params.items() if not k.startswith("gpfl.")}

    def init_client_state(self, global_params):
        head = split_by_prefix(self.model_params(global_params))[1]
        c = global_params[GCE].shape[0]
        uniform = torch.full_like(global_params[GCE][:, 0], 1 / c)
        return {**{k: v.detach().clone() for k, v in head.items()}, PROPS: uniform}

    def broadcast(self, global_params, key, server_state):
        return split_by_prefix(global_params)[0]  # φ, GCE, CoV

    def loss(self, hs: HeadSplit, frozen: Tensor, props: Tensor):
        task, g, p = hs.task, frozen.mean(0), props @ frozen

        def loss(tr, x, y, mask, key):
            body = {k: v for k, v in tr.items() if not k.startswith("gpfl.") and not hs.is_head(k)}
            f = hs.features(body, x, key, mask)
            head = {k: v for k, v in tr.items() if hs.is_head(k)}
            ce = task.loss_from_logits(hs.logits(head, valve(tr, f, p)), y, mask)
            fg = valve(tr, f, g)
            angle = task.loss_from_logits(F.normalize(fg, dim=-1) @ F.normalize(tr[GCE], dim=-1).T, y, mask)
            magnitude = torch.linalg.vector_norm((fg - frozen[y.clamp(min=0)]) * mask.unsqueeze(-1).to(fg.dtype))
            reg = sum((v ** 2).sum() for k, v in tr.items() if k.startswith("gpfl."))
            return ce + angle + self.lam * magnitude + 0.5 * self.mu * reg

        return loss

    def client_update(self, local, sent, data, key, state=None):
        hs = HeadSplit(local.task)
        props = class_proportions(data, sent[GCE].shape[0])
        head = {k: v for k, v in state.items() if k != PROPS}
        steps = self.steps(local)
        new, loss = local.train({**sent, **head}, data, key, steps, loss=self.loss(hs, sent[GCE].detach(), props))
        shared = {k: new[k] for k in sent}
        new_state = {**{k: new[k] for k in head}, PROPS: props}
        return ClientUpdate(model_delta(sent, shared), examples_weight(data), {"loss": loss}, new_state)

    def personal_model(self, params, state=None):
        """The model's parameters (own head), CoV, and the client's conditional input under `gpfl.p`."""
        props = None if state is None else state[PROPS]
        own = {} if state is None else {k: v for k, v in state.items() if k != PROPS}
        gce = params[GCE]
        p = gce.mean(0) if props is None else props @ gce
        cov = {k: v for k, v in params.items() if k.startswith("gpfl.") and k != GCE}
        return {**self.model_params(params), **own, **cov, P: p}

    def predictor_loss(self, hs: HeadSplit, fixed):
        def loss(head, x, y, mask, key):
            f = hs.features(split_by_prefix(self.model_params(fixed))[0], x, key, mask)
            return hs.task.loss_from_logits(hs.logits(head, valve(fixed, f, fixed[P])), y, mask)
        return loss

    def evaluate(self, local, model, test, train=None):
        hs = HeadSplit(local.task)
        x, y, mask = local.full_batch(test)
        body, head = split_by_prefix(self.model_params(model))
        logits = hs.logits(head, valve(model, hs.features(body, x, None, mask), model[P]))
        m = local.task._counted(y, mask)
        return ((logits.argmax(-1) == y) & m).sum(), m.sum()

    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        model = self.personal_model(params, state)
        rest, head = split_by_prefix(model)
        local.train_by_epoch(head, data, key, epochs, lambda e, h: on_epoch(e, {**rest, **h}),
                             loss=self.predictor_loss(HeadSplit(local.task), rest))
