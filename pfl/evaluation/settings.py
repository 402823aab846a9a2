"""The personalization-evaluation settings: one record, used as the config schema
(`personalization:` in conf/config.yaml) and by the engine.

Population (`population`): which clients the headline numbers (`personalized_accuracy`,
`initial_accuracy`, `rounds_to_target`, Acc_local and the beats-local fraction) are measured on.
`heldout` (default, Jiang et al. 2019: personalization of clients never seen in training) reads the
held-out clients and, as a second block, a sample of `train_clients` training clients; `train` reads
the training (participating) clients only, as "Towards generalizable personalized federated learning
with adaptive local adaptation" does (§2: every participating client has its own train / test split and
is personalized); `both` reads both in full, with the training clients as the headline (it exists for
that paper's presets, which report the held-out clients beside the paper's own population).

Cost: evaluations before the last (`interim_*`) may use a client sample and a shorter curve; the last
evaluation is always complete. Rounds to target are measured every `track_every` rounds on a fixed
sample (`track_clients`) of the headline population: initial accuracy (forward only) and Pers.k for
`track_epochs`, so that they are not limited to `eval_every` (pfl.engine.targets)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

from pfl.config.errors import is_int
from pfl.config.settings import Settings, integer, number, optional, relation, setting


def _epochs(v) -> bool:
    return isinstance(v, (list, tuple)) and all(is_int(k) and k >= 1 for k in v)


POPULATIONS = {"heldout": ("heldout", "train"), "train": ("train",), "both": ("train", "heldout")}  # headline first


@dataclass
class PersonalizationSettings(Settings):
    epochs: List[int] = setting(default_factory=lambda: [1, 5], check=_epochs,  # k whose personalized accuracy is reported
                                allowed="a list of integers >= 1, e.g. [1,5]")
    curve_epochs: int = setting(5, integer(ge=0))  # the personalization curve covers k = 0..max(curve_epochs, max(epochs))
    population: str = setting("heldout", relation(  # the headline clients (module docstring)
        lambda v, o: v in POPULATIONS and (v == "heldout" or o.get("train_clients") != 0),
        "heldout, train or both (train and both need personalization.train_clients other than 0)"))
    heldout_clients: Optional[int] = setting(None, optional(integer(ge=1)))  # null: every held-out client
    train_clients: Optional[int] = setting(50, optional(integer(ge=0)))  # training clients evaluated (null: all)
    interim_clients: Optional[int] = setting(10, optional(integer(ge=1)))  # per population, evaluations before the last (null: as the last)
    interim_curve_epochs: Optional[int] = setting(None, optional(integer(ge=0)))  # curve of evaluations before the last (null: as the last)
    track_every: int = setting(1, integer(ge=0))  # rounds between rounds-to-target measurements (0: only at evaluations)
    track_clients: Optional[int] = setting(20, optional(integer(ge=1)))  # fixed sample of the headline clients tracked (null: all evaluated)
    track_epochs: List[int] = setting(default_factory=list, check=_epochs,  # Pers.k tracked every round ([] : initial only)
                                      allowed="a list of integers >= 1, e.g. [3]")
    own_target_fraction: float = setting(0.95, number(gt=0, le=1))  # Fig. 4a: cost to reach this fraction of the run's own final accuracy
    client_opt: Optional[Any] = None  # null: personalize with client_opt; else a client optimizer node
    target_accuracy: float = setting(0.8, number(gt=0, le=1))  # "rounds to target" for initial and personalized accuracy
    local_baseline: bool = False  # also train every evaluated headline client alone (Acc_local)
    local_epochs: int = setting(200, integer(ge=1))  # local-only reference: SGD epochs from the initial model (AFML: 200)
    local_lr: float = setting(0.005, number(gt=0))  # ... and its learning rate (the paper's 0.005)
    local_cache: bool = False  # reuse Acc_local across runs with identical data, initial model and settings

    config_path = "personalization"

    def report_epochs(self, extra=()) -> list[int]:
        """The k to report: the requested ones and those an algorithm adds (the local-only baseline's epochs)."""
        return sorted(set(int(k) for k in self.epochs) | set(extra))

    def curve_length(self, extra=()) -> int:
        """Epochs the personalization curve runs (k = 1..this)."""
        return max(int(self.curve_epochs), max(self.report_epochs(extra), default=0))

    def populations(self) -> tuple[str, ...]:
        """The populations evaluated, the headline first."""
        return POPULATIONS[self.population]

    @property
    def headline(self) -> str:
        return self.populations()[0]

    def interim_curve_length(self, extra=()) -> int:
        """Epochs of an evaluation before the last: `interim_curve_epochs`, at least the reported k."""
        full = self.curve_length(extra)
        if self.interim_curve_epochs is None:
            return full
        return min(full, max(int(self.interim_curve_epochs), max(self.report_epochs(extra), default=0)))
