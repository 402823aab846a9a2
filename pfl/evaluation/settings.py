"""The personalization-evaluation settings: one record, used as the config schema
(`personalization:` in conf/config.yaml) and by the engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional


@dataclass
class PersonalizationSettings:
    epochs: List[int] = field(default_factory=lambda: [1, 5])  # local epochs k whose personalized accuracy is reported
    curve_epochs: int = 10  # the personalization curve covers k = 0..max(curve_epochs, max(epochs))
    heldout_clients: Optional[int] = None  # null: every held-out client
    train_clients: int = 50  # sample of training (seen) clients evaluated the same way
    client_opt: Optional[Any] = None  # null: personalize with client_opt; else a client optimizer node
    target_accuracy: float = 0.8  # "rounds to target" for initial and personalized accuracy
    local_baseline: bool = False  # also train every evaluated held-out client alone (Acc_local)
    local_epochs: int = 200  # local-only reference: epochs of SGD from the initial model (the AFML paper's 200)
    local_lr: float = 0.005  # ... and its learning rate (the paper's 0.005)
    local_cache: bool = False  # reuse Acc_local across runs with identical data, initial model and settings

    def report_epochs(self, extra=()) -> list[int]:
        """The k to report: the requested ones and those an algorithm adds (FedAvg-FT's K)."""
        return sorted(set(int(k) for k in self.epochs) | set(extra))

    def curve_length(self, extra=()) -> int:
        """Epochs the personalization curve runs (k = 1..this)."""
        return max(int(self.curve_epochs), max(self.report_epochs(extra), default=0))
