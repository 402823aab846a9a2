"""Storage, studies, and an exact trial budget shared by any number of workers.

Several workers (processes or machines running the same sweep command) share
one study through its storage: by default an SQLite file in the sweep
directory, or any RDB URL (PostgreSQL, MySQL) for several machines.

The budget is exact: a worker claims a trial (Optuna's `ask`, which first
takes a queued trial, else creates one) and runs it only if fewer than
`n_trials` counted trials have a smaller number. Numbers are handed out under
a lock on the study row, in commit order, so two workers never both see
themselves within the budget. The loser of a race puts its (still empty)
trial back in the queue; it stays counted, so the budget stays spent, and a
later resume with a larger budget runs it.

Counted: every trial except those failed as stale. A running trial whose
worker stopped stamping it (killed, machine lost) for `stale_after_s` is
failed as stale and its parameters queued again (a new, counted trial), so a
resumed sweep loses no trial.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from pfl.config.errors import ConfigError

log = logging.getLogger("pfl.sweep")

HEARTBEAT = "pfl_heartbeat"
STALE = "pfl_stale"
REASON = "fail_reason"


def default_storage(sweep_dir: str | Path) -> str:
    return f"sqlite:///{(Path(sweep_dir) / 'optuna.db').resolve()}"


def make_storage(url: str):
    """An RDB storage; SQLite waits for the file lock instead of failing at once."""
    import optuna

    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    for attempt in range(5):  # two workers creating the schema at once: one of them retries
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except Exception:  # noqa: BLE001
            if attempt == 4:
                raise
            time.sleep(0.5 + attempt)


def open_study(name: str, storage, directions: list[str], sampler=None, pruner=None):
    """Create the study, or load it (resume, or another worker created it)."""
    import optuna

    study = optuna.create_study(study_name=name, storage=storage, directions=directions, sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    have = [d.name.lower() for d in study.directions]
    if have != list(directions):
        raise ConfigError("sweep.directions", directions, f"the directions of the existing study '{name}' ({have}); "
                          "use a new sweep.name or hydra.sweep.dir for a different objective")
    return study


def counted(t) -> bool:
    """Trials that take a place in the budget: all but the stale ones (whose parameters were queued again)."""
    from optuna.trial import TrialState

    return not (t.state == TrialState.FAIL and t.user_attrs.get(STALE))


def claim(study, storage, n_trials: int):
    """A running trial of this study within the budget, or None when the budget is spent."""
    from optuna.trial import TrialState

    taken = [t for t in study.get_trials(deepcopy=False) if counted(t) and t.state != TrialState.WAITING]
    if len(taken) >= n_trials:
        return None
    trial = study.ask()
    if not within_budget(study, trial.number, n_trials):  # another worker took the last slot meanwhile
        storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)
        return None
    storage.set_trial_user_attr(trial._trial_id, HEARTBEAT, time.time())
    return trial


def within_budget(study, number: int, n_trials: int) -> bool:
    """Whether fewer than n_trials counted trials have a smaller number than trial `number`."""
    return sum(1 for t in study.get_trials(deepcopy=False) if counted(t) and t.number < number) < n_trials


def fail_stale(study, storage, stale_after_s: float) -> int:
    """Fail running trials nobody stamped for `stale_after_s`, queueing their parameters again."""
    from optuna.trial import TrialState

    now, n = time.time(), 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        stamp = t.user_attrs.get(HEARTBEAT) or (t.datetime_start.timestamp() if t.datetime_start else now)
        if now - stamp > stale_after_s:
            n += requeue(study, storage, t, f"stale: no heartbeat for {now - stamp:.0f} s (its worker stopped)")
    return n


def requeue(study, storage, trial, reason: str) -> int:
    """Fail a trial that did not get to finish (not counted) and queue its parameters again; 1 if done."""
    import optuna
    from optuna.trial import TrialState

    try:
        storage.set_trial_user_attr(trial._trial_id, STALE, True)
        storage.set_trial_user_attr(trial._trial_id, REASON, reason)
        study.tell(trial.number, state=TrialState.FAIL)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError):
        return 0  # finished meanwhile, or another worker got there first
    params = storage.get_trial(trial._trial_id).params
    if params:
        study.enqueue_trial(params, user_attrs={"retry_of": trial.number})
    log.warning("trial %d of %s did not finish (%s): its parameters are queued again", trial.number,
                study.study_name, reason)
    return 1


class Heartbeat:
    """Stamps the given running trials every `every` seconds while a batch runs."""

    def __init__(self, storage, trial_ids: list[int], every: float):
        self.storage, self.ids, self.every = storage, list(trial_ids), every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pfl-sweep-heartbeat", daemon=True)

    def _stamp(self) -> None:
        for i in self.ids:
            try:
                self.storage.set_trial_user_attr(i, HEARTBEAT, time.time())
            except Exception:  # noqa: BLE001 - finished meanwhile, or a transient lock
                pass

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._stamp()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
