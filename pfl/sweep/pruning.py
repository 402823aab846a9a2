"""Pruning inside a trial's run: report at each evaluation, stop when the pruner says so.

The trial's job finds its Optuna trial from `sweep.storage`, `sweep.study` and
`sweep.trial` (set by the sweeper), so this works in the sweeper's process,
in joblib workers and on other machines alike. After every evaluation the
callback reports `sweep.report` (a key of the evaluation row, e.g.
heldout/pers_acc_5) at step = round, asks the study's pruner,
and raises optuna.TrialPruned, which leaves trainer.fit and the job; the
sweeper records the trial as PRUNED (the W&B run is tagged `pruned`).
"""

from __future__ import annotations

import logging
import math

import pytorch_lightning as pl
from omegaconf import DictConfig

from pfl.config import hooks
from pfl.config.sweep import SweepSettings

log = logging.getLogger("pfl.sweep")


class OptunaPruning(pl.Callback):
    def __init__(self, settings: SweepSettings):
        self.settings = settings
        self.key = settings.report
        self._trial = None

    def trial(self):
        if self._trial is None:
            import hydra.utils
            import optuna

            from pfl.sweep.study import make_storage

            s = self.settings
            storage = make_storage(s.storage)
            study = optuna.load_study(study_name=s.study, storage=storage, pruner=hydra.utils.instantiate(s.pruner),
                                      sampler=optuna.samplers.RandomSampler())
            trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(s.study), s.trial)
            self._trial = optuna.Trial(study, trial_id)
        return self._trial

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not pl_module.history or int(pl_module.history[-1]["round"]) != int(pl_module.round):
            return  # no evaluation this round
        row = pl_module.history[-1]
        r = int(row["round"])
        if self.key not in row:
            keys = ", ".join(k for k, v in row.items() if isinstance(v, (int, float)))
            raise KeyError(f"sweep.report='{self.key}' is not an evaluation metric (there: {keys})")
        value = float(row[self.key])
        if not math.isfinite(value):
            return  # a NaN report would poison the pruner's statistics; the objective check fails the trial
        import optuna

        trial = self.trial()
        trial.report(value, step=r)
        if r < pl_module.total_rounds and trial.should_prune():
            log.info("trial %d pruned at round %d (%s=%.4f)", self.settings.trial, r, self.key, value)
            raise optuna.TrialPruned(f"pruned at round {r}: {self.key}={value:.4f}")


def callbacks(cfg: DictConfig) -> list:
    node = cfg.get("sweep")
    if not node or node.get("trial") is None or not node.get("pruner"):
        return []
    return [OptunaPruning(SweepSettings.from_cfg(node))]


hooks.register("optuna_pruning", callbacks)
