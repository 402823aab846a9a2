"""FedBN (Li, Jiang, Zhang, Kamp, Dou 2021, "FedBN: Federated learning on non-IID features via local
batch normalization", ICLR), Algorithm 1.

FedAvg in which every batch-normalization layer stays on its client: each round the server sends the
non-BN parameters; client k trains its whole model (the received parameters and its own BN layers)
for E epochs with the client optimizer and sends back the non-BN parameters; the server averages them
with equal weights 1/K (Algorithm 1; `weighting=examples` weights by example count, FedAvg's rule).
The BN layers' parameters are per-client state (the model's initial γ = 1, β = 0 at the start,
checkpointed); the server's copies are never updated (no Δ is sent for them). With a model without
BN layers FedBN is FedAvg (with the chosen weighting).

The BN layers are the model's nn.BatchNorm / pfl MaskedBatchNorm modules (model=small_bn_cnn has two);
pfl's BN normalizes with the statistics of the batch it is given (no running averages, see
pfl.models.layers.MaskedBatchNorm), so the paper's local running statistics are, here, each client's
own batch statistics in training and its test set's in evaluation: local either way.

Bytes: the non-BN parameters both ways. Personalization: a training client is the global model with
its own BN layers (k = 0 evaluates that) and continues local training of the whole model for k epochs;
a held-out client starts from the server's (initial) BN parameters, normalizing with its own data.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from pfl.algorithms.base import Algorithm, ClientUpdate, LocalEpochs, examples_weight, model_delta, uniform_weight
from pfl.config.errors import ConfigError
from pfl.models.layers import MaskedBatchNorm
from pfl.config.settings import one_of, setting
from pfl.task import Params

NORMS = (nn.modules.batchnorm._BatchNorm, MaskedBatchNorm)


def bn_names(model: nn.Module) -> set[str]:
    """The names of the parameters of the model's batch-normalization layers."""
    return {f"{m}.{p}" if m else p for m, mod in model.named_modules() if isinstance(mod, NORMS)
            for p, _ in mod.named_parameters(recurse=False)}


@dataclass
class FedBN(LocalEpochs, Algorithm):
    weighting: str = setting("uniform", one_of("uniform", "examples"))  # 1/K (Alg. 1) or n_k / n

    @staticmethod
    def is_bn(name: str) -> bool:
        """BN layers are named bn<i> (pfl.models); checked against the model in client_update."""
        return any(part.startswith("bn") for part in name.split(".")[:-1])

    def _parts(self, params: Params) -> tuple[Params, Params]:
        """(shared, local BN) parameters."""
        return ({k: v for k, v in params.items() if not self.is_bn(k)},
                {k: v for k, v in params.items() if self.is_bn(k)})

    def check(self, model: nn.Module) -> None:
        named = {k for k, _ in model.named_parameters() if self.is_bn(k)}
        if named != bn_names(model):
            raise ConfigError("model", type(model).__name__, "a model whose batch-norm layers (and only they) "
                              "are named bn<i> (FedBN keeps them local)")

    def init_client_state(self, global_params):
        bn = self._parts(global_params)[1]
        return {k: v.detach().clone() for k, v in bn.items()} if bn else None  # no BN layers: stateless

    def broadcast(self, global_params, key, server_state):
        return self._parts(global_params)[0]

    def client_update(self, local, sent, data, key, state=None):
        self.check(local.task.model)
        steps = self.steps(local)
        new, loss = local.train({**sent, **(state or {})}, data, key, steps)
        shared, bn = self._parts(new)
        weight = examples_weight(data) if self.weighting == "examples" else uniform_weight(data)
        return ClientUpdate(model_delta(sent, shared), weight, {"loss": loss}, bn)

    def personal_model(self, params, state=None):
        model = self.model_params(params)
        return model if state is None else {**model, **state}

    def adapt(self, local, params, data, key, epochs, on_epoch, state=None) -> None:
        local.train_by_epoch(self.personal_model(params, state), data, key, epochs, on_epoch)
