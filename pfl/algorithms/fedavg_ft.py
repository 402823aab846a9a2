"""FedAvg-FT, the AFML paper's first baseline ("FedAvg-FT Jiang et al. (2019)"): Jiang
et al.'s Personalized FedAvg, their Algorithm 2, as two of the engine's stages:

    1. FedAvg(E) with momentum SGD as the server optimizer (lr 1, momentum 0.9, the
       paper's server optimizer) and "a relatively larger E" (E = 10, the FedAvg model
       their fine-tuning experiments start from: Figure 2, Table 3);
    2. Reptile(K) with Adam as the server optimizer (their Table 3 names no lr: Adam's
       default 0.001), K = 10 local steps ("FedAvg-FT, K=10" in the AFML paper's
       legends; K = 3 and 10 in its Figure 1);
    3. personalization with the same client optimizer as training: Pers.1 / Pers.5 like
       every other method (the default `adapt`).

The split point is given by neither paper. Default: the last 2/7 of the run's rounds
fine-tune (`finetune_fraction`), the proportion of Jiang et al.'s own schedule (500
FedAvg rounds, then Reptile with Adam "for further 200 communication rounds", Figure 2
and Table 3), so that a run of R rounds keeps their ratio of training to fine-tuning;
`finetune_rounds` fixes the number instead. A stage given no rounds is left out.

How: `stages` returns the two stages (FedAvg(E), SGD(momentum)) and (Reptile(K), Adam),
named `<option>` and `<option>_finetune`; the engine runs them as it runs the staged
preset experiment=personalized_fedavg (its own optimizer state, FLOPs measured per
stage, checkpoint and resume across the switch). Because the server optimizers are
Alg. 2's, the configured `server_opt` is not read; `server_optimizers=configured`
uses it for both stages instead (one server optimizer throughout: the AFML paper names
none).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Optional

import torch

from pfl.algorithms.base import Algorithm, LocalEpochs, epochs_setting
from pfl.algorithms.fedavg import FedAvg, Reptile
from pfl.config.settings import integer, number, one_of, optional, setting


@dataclass
class FedAvgFT(LocalEpochs, Algorithm):
    local_epochs: int = epochs_setting(10)  # E of the FedAvg stage ("relatively larger E": Jiang's 10)
    finetune_steps: int = setting(10, integer(ge=1))  # K: Reptile(K)'s local steps
    finetune_rounds: Optional[int] = setting(None, optional(integer(ge=0)))  # R_ft (null: finetune_fraction of R)
    finetune_fraction: float = setting(2 / 7, number(ge=0, le=1))  # R_ft / R: Jiang's 200 after 500 rounds
    server_optimizers: str = setting("alg2", one_of("alg2", "configured"))  # alg2: SGD momentum, then Adam
    server_lr: float = setting(1.0, number(gt=0))  # FedAvg stage: server SGD lr (Jiang: 1.0)
    server_momentum: float = setting(0.9, number(ge=0, lt=1))  # ... and momentum (Jiang: 0.9)
    finetune_lr: float = setting(0.001, number(gt=0))  # Reptile stage: server Adam lr (Adam's default)

    def split(self, rounds: int) -> tuple[int, int]:
        """(FedAvg rounds, Reptile rounds) of a run of `rounds` rounds."""
        total = int(rounds)
        ft = self.finetune_rounds if self.finetune_rounds is not None else round(self.finetune_fraction * total)
        ft = min(ft, total)
        return total - ft, ft

    def stages(self, server_opt, rounds: int):
        first, second = server_opt, server_opt
        if self.server_optimizers == "alg2":
            first = partial(torch.optim.SGD, lr=self.server_lr, momentum=self.server_momentum)
            second = partial(torch.optim.Adam, lr=self.finetune_lr)
        fedavg, finetune = self.split(rounds)
        parts = [("", FedAvg(local_epochs=self.local_epochs), first, fedavg),
                 ("_finetune", Reptile(local_steps=self.finetune_steps), second, finetune)]
        return [p for p in parts if p[3] > 0]

    def client_update(self, local, sent, data, key, state=None):
        raise NotImplementedError("FedAvgFT runs as its stages (FedAvg, then Reptile): see FedAvgFT.stages")
