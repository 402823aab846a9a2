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
from pfl.settings import integer, setting


@dataclass
class FedAvgFT(FedAvg):
    finetune_epochs: int = setting(10, integer(ge=1))  # K

    @property
    def report_epochs(self) -> tuple[int, ...]:
        return (self.finetune_epochs,)
