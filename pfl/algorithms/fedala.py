"""FedALA (Zhang, Hua, Wang, Song, Xue, Ma, Guan 2023, "FedALA: Adaptive local aggregation for
personalized federated learning", AAAI), Sec. 4 and Algorithm 1.

Each client keeps its local model θ_i (per-client state) and element-wise mixing weights W_i for the
top layers (here: the head, `pfl.models`' `head.*`). At round t it receives Θ^{t-1} and builds its
initial local model by adaptive local aggregation (ALA, Eq. 5)

    θ̂_i = θ_i^{t-1} + (Θ^{t-1} - θ_i^{t-1}) ⊙ [1^{|θ|-p}; W_i^p]

(the body is taken from the global model, the head mixed element-wise). W_i is learned on a random
s % of the client's training data D_i^s (Eq. 6),

    W_i ← clip(W_i - η ∇_W L(θ̂_i, D_i^s; Θ^{t-1}), 0, 1)   (∇_W = ∇_θ̂ L ⊙ (Θ - θ))

for one epoch per round; in the client's first ALA round the paper trains W "until convergence": here
a fixed `start_epochs` epochs (a data-dependent stopping rule cannot be vectorized; the paper gives no
count). W starts at 1 (θ̂ = Θ). The client then trains θ̂ for E epochs with the client optimizer
(FedAvg's local training) and sends the whole model; the server averages by example count
(Δ = Θ - θ_i, server SGD lr 1). A client's first participation has no local model yet: θ̂ = Θ.

Defaults (paper, Sec. 5): s = 80 %, η = 1.0, p = the head. The start phase costs `start_epochs` ALA
passes in every round (masked to one outside the start phase, so vmap and the loop agree): lower it for
speed. Bytes: the model both ways (FedAvg's). Personalization: a training client starts from its ALA
model with its current W (no new W step); a held-out client has no local model and starts from Θ; both
then train the whole model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pfl import rng
from pfl.algorithms.base import Algorithm, ClientUpdate, LocalEpochs, examples_weight, model_delta
from pfl.algorithms.head_split import check_head, split_by_prefix
from pfl.data.federated import ClientData
from pfl.execution import where_tree
from pfl.config.settings import integer, number, setting


@dataclass
class _ClippedSGD:
    """SGD on the mixing weights, projected onto [0, 1] after each step (Eq. 6's clip)."""
    lr: float
    batch_size: int

    def init(self, params):
        return {}

    def update(self, params, grads, state):
        return {k: (params[k] - self.lr * grads[k]).clamp(0.0, 1.0) for k in params}, state


def ala_mix(global_params, local_params, weights):
    """θ̂ = θ + (Θ - θ) ⊙ W on the mixed (head) names; Θ elsewhere (Eq. 5)."""
    return {k: local_params[k] + (g - local_params[k]) * weights[k] if k in weights else g
            for k, g in global_params.items()}


@dataclass
class FedALA(LocalEpochs, Algorithm):
    sample_percent: float = setting(80.0, number(gt=0, le=100))  # s: % of local data that trains W
    ala_lr: float = setting(1.0, number(ge=0))  # η: step size of W
    start_epochs: int = setting(10, integer(ge=1))  # passes over D^s in a client's first ALA round

    def init_client_state(self, global_params):
        mixed = split_by_prefix(global_params)[1]  # the mixed top layers (p): the head's parameters
        device = next(iter(global_params.values())).device
        return {**{"local." + k: v.detach().clone() for k, v in global_params.items()},
                **{"w." + k: torch.ones_like(v) for k, v in mixed.items()},
                "rounds": torch.zeros((), dtype=torch.int64, device=device)}

    @staticmethod
    def _part(state, prefix):
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

    def _previous(self, sent, state):
        """θ_i^{t-1}; Θ where the client has never trained (nothing to mix)."""
        fresh = state["rounds"] == 0
        return {k: torch.where(fresh, sent[k], v) for k, v in self._part(state, "local.").items()}

    def sample(self, data: ClientData, key) -> ClientData:
        """D^s: a random `sample_percent` % of the client's examples (at least one)."""
        order = rng.permutation(key, data.n, data.x.shape[0])
        n = torch.div(data.n * int(round(self.sample_percent * 100)), 10000, rounding_mode="floor")
        return ClientData(data.x[order], data.y[order], n.clamp(min=1).minimum(data.n),
                          None if data.aug is None else data.aug)

    def learn_weights(self, local, sent, prev, weights, data, key, start):
        """W after one pass over D^s, or `start_epochs` passes in the start phase (Eq. 6)."""
        ala = local.with_opt(_ClippedSGD(self.ala_lr, local.batch_size))

        def loss(w, x, y, mask, k):
            return local.task.loss(ala_mix(sent, prev, w), x, y, mask, k)

        key = rng.fold(key, 0xA1A)  # ALA's own randomness; local training keeps the round's key (= FedAvg's)
        sub = self.sample(data, key)
        nb = local.batches_per_epoch
        limit = torch.where(start, self.start_epochs, 1) * nb(sub.n)
        opt_state = ala.opt.init(weights)

        def step(carry, s):
            w, st = carry
            s = torch.as_tensor(s, device=data.x.device)
            g, _ = ala.grad(w, ala.batch(sub, key, s), rng.fold(key, 1000 + s), loss)
            return where_tree(s < limit, ala.opt.update(w, g, st), carry)  # one pass outside the start phase

        w, _ = ala.steps_loop(sub)((weights, opt_state), step, lambda n: self.start_epochs * nb(n), sub.n)
        return w

    def client_update(self, local, sent, data, key, state=None):
        check_head(local.task)
        prev = self._previous(sent, state)
        weights = self.learn_weights(local, sent, prev, self._part(state, "w."), data, key, state["rounds"] == 1)
        start = ala_mix(sent, prev, weights)
        new, loss = local.train(start, data, key, self.steps(local))
        new_state = {**{"local." + k: v for k, v in new.items()}, **{"w." + k: v for k, v in weights.items()},
                     "rounds": state["rounds"] + 1}
        return ClientUpdate(model_delta(sent, new), examples_weight(data), {"loss": loss}, new_state)

    def personal_model(self, params, state=None):
        model = self.model_params(params)
        return model if state is None else ala_mix(model, self._previous(model, state), self._part(state, "w."))

    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        local.train_by_epoch(self.personal_model(params, state), data, key, epochs, on_epoch)
