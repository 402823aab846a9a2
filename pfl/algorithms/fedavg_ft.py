"""FedAvg-FT: FedAvg(E), then fine-tuning of the whole model for K epochs on
each client (the AFML paper's baseline, "FedAvg with K local epochs").

Training is FedAvg; personalization is the default one (local epochs with
the personalization client optimizer). `finetune_epochs` = K is added to the
epochs the run reports, so summary.json's `personalized_accuracy` has the
key str(K) (e.g. "10") beside Pers.1 and Pers.5: that value is FedAvg-FT's
accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

from pfl.algorithms.fedavg import FedAvg
from pfl.config_errors import check, is_int


@dataclass
class FedAvgFT(FedAvg):
    finetune_epochs: int = 10  # K
    name: str = "fedavg_ft"

    def __post_init__(self):
        super().__post_init__()
        check(is_int(self.finetune_epochs) and self.finetune_epochs >= 1, "algorithm.finetune_epochs",
              self.finetune_epochs, "an integer >= 1")

    @property
    def report_epochs(self) -> tuple[int, ...]:
        return (self.finetune_epochs,)
