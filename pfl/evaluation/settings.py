"""The personalization-evaluation settings: one record, used as the config schema
(`personalization:` in conf/config.yaml) and by the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

from pfl.config_errors import is_int
from pfl.settings import Settings, integer, number, optional, setting


def _epochs(v) -> bool:
    return isinstance(v, (list, tuple)) and all(is_int(k) and k >= 1 for k in v)


@dataclass
class PersonalizationSettings(Settings):
    epochs: List[int] = setting(default_factory=lambda: [1, 5], check=_epochs,  # k whose personalized accuracy is reported
                                allowed="a list of integers >= 1, e.g. [1,5]")
    curve_epochs: int = setting(10, integer(ge=0))  # the personalization curve covers k = 0..max(curve_epochs, max(epochs))
    heldout_clients: Optional[int] = setting(None, optional(integer(ge=1)))  # null: every held-out client
    train_clients: int = setting(50, integer(ge=0))  # sample of training (seen) clients evaluated the same way
    client_opt: Optional[Any] = None  # null: personalize with client_opt; else a client optimizer node
    target_accuracy: float = setting(0.8, number(gt=0, le=1))  # "rounds to target" for initial and personalized accuracy
    local_baseline: bool = False  # also train every evaluated held-out client alone (Acc_local)
    local_epochs: int = setting(200, integer(ge=1))  # local-only reference: SGD epochs from the initial model (AFML: 200)
    local_lr: float = setting(0.005, number(gt=0))  # ... and its learning rate (the paper's 0.005)
    local_cache: bool = False  # reuse Acc_local across runs with identical data, initial model and settings

    config_path = "personalization"

    def report_epochs(self, extra=()) -> list[int]:
        """The k to report: the requested ones and those an algorithm adds (FedAvg-FT's K)."""
        return sorted(set(int(k) for k in self.epochs) | set(extra))

    def curve_length(self, extra=()) -> int:
        """Epochs the personalization curve runs (k = 1..this)."""
        return max(int(self.curve_epochs), max(self.report_epochs(extra), default=0))
