"""Sweep building blocks without training: search spaces, settings, the exact budget, stale trials, Pareto."""

from __future__ import annotations

import multiprocessing as mp
import time

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from pfl.config.errors import ConfigError
from pfl.report.pareto import pareto_front
from pfl.sweep import space as sp
from pfl.config.sweep import SweepSettings
from pfl.sweep.study import HEARTBEAT, STALE, claim, counted, fail_stale, make_storage, open_study, within_budget

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_hydra_sweep_syntax_becomes_optuna_distributions():
    space, fixed = sp.split({
        "client_opt.lr": "tag(log, interval(0.001, 0.1))",
        "algorithm.local_epochs": "range(1, 21)",
        "+algorithm.k": "range(2, 21, 3)",
        "zeta": "tag(int, interval(1, 64))",
        "server_opt": "choice(sgd, adam)",
        "seed": "0,1,2",
        "rounds": 7,
        "model.hidden": [8, 16],
    })
    assert space["client_opt.lr"] == FloatDistribution(0.001, 0.1, log=True)
    assert space["algorithm.local_epochs"] == IntDistribution(1, 20)  # Python's range: stop excluded
    assert space["+algorithm.k"] == IntDistribution(2, 20, step=3)
    assert space["zeta"] == IntDistribution(1, 64)
    assert space["server_opt"] == CategoricalDistribution(["sgd", "adam"])
    assert space["seed"] == CategoricalDistribution([0, 1, 2])
    assert space["model.hidden"] == CategoricalDistribution([8, 16])
    assert fixed == ["rounds=7"]
    assert sp.param_name("+algorithm.k") == "algorithm.k"


def test_bad_space_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match="sweep.params.client_opt.lr"):
        sp.split({"client_opt.lr": "tag(log, interval(0, 0.1))"})
    with pytest.raises(ConfigError, match="sweep.params.x"):
        sp.split({"x": "interval(1"})


def test_values_round_trip_through_override_strings():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for v in [0.1, 3, 1e-7, True, None, "sgd", "a b", "it's", "sqlite:////tmp/x.db"]:
        assert parser.parse_override(f"k={sp.format_value(v)}").value() == v


def test_command_line_wins_over_sweep_file_over_experiment_grid():
    from pfl.sweep.driver import search_space

    s = SweepSettings(name="s", objectives=["initial_accuracy"],
                      params={"client_opt.lr": "interval(0.01, 0.1)", "algorithm.local_epochs": "range(1, 5)"})
    space, fixed = search_space(s, ["+sweep=s", "client_opt.lr=0.05", "seed=choice(0, 1)"],
                                {"algorithm.local_epochs": "2,5,10", "clients_per_round": "5,20"})
    assert set(space) == {"algorithm.local_epochs", "clients_per_round", "seed"}
    assert space["algorithm.local_epochs"] == IntDistribution(1, 4)  # the sweep file, not the experiment grid
    assert "client_opt.lr=0.05" in fixed and "+sweep=s" in fixed


def test_settings_validation():
    SweepSettings.from_cfg({"name": "a", "objectives": ["initial_accuracy", "personalized_accuracy.5"],
                            "directions": ["maximize", "maximize"]})
    with pytest.raises(ConfigError, match="sweep.directions"):
        SweepSettings(name="a", objectives=["x", "y"], directions=["maximize"])
    with pytest.raises(ConfigError, match="sweep.pruner"):  # Optuna prunes single-objective studies only
        SweepSettings(name="a", objectives=["x", "y"], directions=["maximize"] * 2,
                      pruner={"_target_": "optuna.pruners.MedianPruner"}, report="r")
    with pytest.raises(ConfigError, match="sweep.report"):
        SweepSettings(name="a", objectives=["x"], pruner={"_target_": "optuna.pruners.MedianPruner"})
    with pytest.raises(ConfigError, match="sweep.n_trails"):
        SweepSettings.from_cfg({"name": "a", "objectives": ["x"], "n_trails": 3})
    with pytest.raises(ConfigError, match="sweep"):
        SweepSettings.from_cfg(None)


def test_grid_points_and_labels():
    from pfl.sweep.driver import grid_points, point_label

    pts = grid_points({"zeta": [0.2, 1.0], "seed": [0]})
    assert pts == [{"zeta": 0.2, "seed": 0}, {"zeta": 1.0, "seed": 0}]
    assert point_label(pts[0]) == "zeta=0.2,seed=0"
    assert grid_points({}) == [{}]


def _study(tmp_path, name="s"):
    storage = make_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    return open_study(name, storage, ["maximize"]), storage


def test_loser_of_a_race_puts_its_trial_back_and_a_resume_reuses_it(tmp_path):
    study, storage = _study(tmp_path)
    first = claim(study, storage, n_trials=2)
    study.tell(first, 0.5)
    # two workers both counted 1 < 2 and asked: both trials are running now
    a, b = study.ask(), study.ask()
    assert within_budget(study, a.number, 2)
    assert not within_budget(study, b.number, 2)
    storage.set_trial_state_values(b._trial_id, TrialState.WAITING)
    study.tell(a, 0.7)
    assert claim(study, storage, n_trials=2) is None  # the budget is spent
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.WAITING]
    again = claim(study, storage, n_trials=3)  # a resume with a larger budget takes the queued trial
    assert again.number == b.number
    assert claim(study, storage, n_trials=3) is None


def _worker(url: str, n_trials: int, queue) -> None:
    storage = make_storage(url)  # every worker creates or loads the study, as sweep workers do
    study = open_study("s", storage, ["maximize"])
    mine = []
    while (t := claim(study, storage, n_trials)) is not None:
        t.suggest_float("x", 0, 1)
        time.sleep(0.01)
        study.tell(t, 1.0)
        mine.append(t.number)
    queue.put(mine)


def test_three_processes_share_an_exact_budget(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    ctx = mp.get_context("fork")  # no database connection is open before the fork
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, 12, q)) for _ in range(3)]
    for p in procs:
        p.start()
    done = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    numbers = sorted(n for d in done for n in d)
    study = optuna.load_study(study_name="s", storage=make_storage(url))
    complete = [t.number for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(numbers) == len(set(numbers)) == 12  # none lost, none run twice
    assert sorted(complete) == numbers


def test_stale_trial_is_failed_and_its_parameters_queued_again(tmp_path):
    study, storage = _study(tmp_path)
    t = claim(study, storage, n_trials=3)
    t.suggest_float("lr", 0.001, 0.1)
    lr = t.params["lr"]
    storage.set_trial_user_attr(t._trial_id, HEARTBEAT, time.time() - 1000)  # its worker died long ago
    assert fail_stale(study, storage, stale_after_s=600) == 1
    frozen = study.get_trials()[t.number]
    assert frozen.state == TrialState.FAIL and frozen.user_attrs[STALE] and "stale" in frozen.user_attrs["fail_reason"]
    assert not counted(frozen)
    retry = claim(study, storage, n_trials=3)
    assert retry.suggest_float("lr", 0.001, 0.1) == lr  # the same point runs again
    assert fail_stale(study, storage, stale_after_s=600) == 0  # fresh heartbeat: left alone


def test_existing_study_with_other_directions_is_refused(tmp_path):
    study, storage = _study(tmp_path)
    with pytest.raises(ConfigError, match="sweep.directions"):
        open_study("s", storage, ["minimize"])


def test_pareto_front_by_hand():
    pts = [[0.1, 0.9], [0.5, 0.5], [0.4, 0.4], [0.9, 0.1], [0.9, 0.05]]
    assert pareto_front(pts, ["maximize", "maximize"]) == [0, 1, 3]
    assert pareto_front(pts, ["minimize", "minimize"]) == [0, 2, 4]


class FakeLauncher:
    """Answers each job at once with what `answer(overrides)` returns or raises (no training)."""

    def __init__(self, answer):
        self.answer, self.batches = answer, []

    def launch(self, jobs, initial_job_idx):
        from hydra.core.utils import JobReturn, JobStatus

        self.batches.append(len(jobs))
        out = []
        for job in jobs:
            params = {k: v for k, _, v in (o.partition("=") for o in job)}
            try:
                out.append(JobReturn(status=JobStatus.COMPLETED, _return_value=self.answer(params), overrides=job))
            except Exception as exc:  # noqa: BLE001
                out.append(JobReturn(status=JobStatus.FAILED, _return_value=exc, overrides=job))
        return out


class FakeSweeper:
    def __init__(self, tmp_path, answer, **sweep):
        from omegaconf import OmegaConf

        node = {"name": "s", "objectives": ["acc"], "params": {"x": "interval(0, 1)"}, **sweep}
        self.config = OmegaConf.create({"seed": 0, "sweep": node, "hydra": {"sweep": {"dir": str(tmp_path)}}})
        self.launcher = FakeLauncher(answer)
        self.params = {}

    def validate_batch_is_legal(self, jobs):
        pass


def test_sweep_loop_batches_and_budget_without_training(tmp_path):
    from pfl.sweep.driver import run_sweep

    sweeper = FakeSweeper(tmp_path, lambda p: 1 - (float(p["x"]) - 0.3) ** 2, n_trials=7, n_jobs=3)
    outcomes = run_sweep(sweeper, ["+sweep=s", "y=2"])
    assert sweeper.launcher.batches == [3, 3, 1]
    assert [o["state"] for o in outcomes] == ["COMPLETE"] * 7
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert study.best_value == max(o["values"][0] for o in outcomes)
    assert run_sweep(sweeper, ["+sweep=s"]) == []  # rerun: the budget is spent


def test_sweep_loop_failure_paths(tmp_path):
    from pfl.sweep.driver import run_sweep
    from pfl.sweep.objective import MissingObjective

    def answer(p):
        x = float(p["x"])
        if x < 0.5:
            return float("nan")
        raise MissingObjective("the objective 'acc' was never produced by this run")

    sweeper = FakeSweeper(tmp_path, answer, n_trials=6, sampler={"_target_": "optuna.samplers.RandomSampler", "seed": 1})
    with pytest.raises(ConfigError, match="sweep.objectives"):  # a misspelt objective stops the sweep
        run_sweep(sweeper, [])
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    reasons = [t.user_attrs["fail_reason"] for t in study.get_trials()]
    assert all(t.state == TrialState.FAIL for t in study.get_trials()) and len(reasons) < 6
    assert reasons[-1].startswith("MissingObjective") and all(r.startswith("FloatingPointError: non-finite") for r in reasons[:-1])
