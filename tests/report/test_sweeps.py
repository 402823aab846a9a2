"""`python -m pfl.report` on a hand-made multi-objective study: table, Pareto front, curves."""

from __future__ import annotations

import json
import re

import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from pfl.report.__main__ import main

# (E, lr) -> (initial, personalized); the front by hand: #0, #2, #3 (#1 is dominated by #2, #4 by #3)
TRIALS = [((1, 0.01), (0.80, 0.60)), ((5, 0.02), (0.60, 0.70)), ((5, 0.05), (0.70, 0.75)),
          ((20, 0.1), (0.50, 0.90)), ((10, 0.1), (0.40, 0.85))]


def test_report_of_a_multi_objective_sweep(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="tradeoff", storage=url, directions=["maximize", "maximize"])
    dists = {"E": IntDistribution(1, 20), "lr": FloatDistribution(0.001, 0.1, log=True)}
    for i, ((e, lr), values) in enumerate(TRIALS):
        run = tmp_path / f"trial_{i}"
        run.mkdir()
        (run / "metrics.csv").write_text("round,heldout/initial_acc,heldout/pers_acc_5\n"
                                         f"5,0.1,0.2\n10,{values[0]},{values[1]}\n")
        study.add_trial(create_trial(params={"E": e, "lr": lr}, distributions=dists, values=list(values),
                                     user_attrs={"run_dir": str(run)}))
    study.add_trial(create_trial(params={"E": 3, "lr": 0.5}, distributions={"E": dists["E"], "lr": FloatDistribution(0.001, 1, log=True)},
                                 state=TrialState.FAIL, user_attrs={"fail_reason": "FloatingPointError: round 3: nan"}))
    (tmp_path / "sweep.json").write_text(json.dumps({
        "name": "tradeoff", "storage": url, "studies": ["tradeoff"], "n_trials": 6,
        "objectives": ["initial_accuracy", "personalized_accuracy.5"], "directions": ["maximize", "maximize"]}))
    assert main([str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    front = re.findall(r'<tr class="COMPLETE front"><td>(\d+)</td>', page)
    assert sorted(map(int, front)) == [0, 2, 3]
    assert "Pareto front" in page and "#3: 0.5, 0.9; #2: 0.7, 0.75; #0: 0.8, 0.6" in page
    assert page.count('<tr class="') == 6 and "FloatingPointError: round 3: nan" in page
    # Pareto, objective/params, convergence; Optuna's importance (of the first objective), parallel coordinates, contour
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 6
    assert 'href="trial_0"' in page


def test_report_of_an_empty_directory_is_a_one_line_error(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def single_objective_sweep(tmp_path) -> None:
    """A finished six-trial study over (local_epochs, lr) in tmp_path, as a sweep leaves it (best: #3)."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="lr", storage=url, direction="maximize")
    dists = {"algorithm.local_epochs": IntDistribution(1, 20), "client_opt.lr": FloatDistribution(0.001, 0.1, log=True)}
    for i, (e, lr) in enumerate([(1, 0.01), (5, 0.02), (11, 0.0591234567), (20, 0.1), (3, 0.003), (8, 0.05)]):
        run = tmp_path / f"trial_{i}"
        run.mkdir()
        study.add_trial(create_trial(params={"algorithm.local_epochs": e, "client_opt.lr": lr}, distributions=dists,
                                     value=0.5 + lr * 5, user_attrs={"run_dir": str(run)}))
    (tmp_path / "sweep.json").write_text(json.dumps({
        "name": "lr", "storage": url, "studies": ["lr"], "n_trials": 6,
        "objectives": ["heldout/pers_acc_5"], "directions": ["maximize"]}))


def test_report_of_a_single_objective_sweep_has_optunas_views(tmp_path, monkeypatch):
    from matplotlib.ticker import MaxNLocator

    from pfl.report import figures

    single_objective_sweep(tmp_path)
    drawn = []
    real_png = figures.png
    monkeypatch.setattr(figures, "png", lambda fig: drawn.append(fig) or real_png(fig))
    assert main([str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    # the best trial's callout: short names, 3 significant digits, its run directory
    assert ("<p class='best'>Best trial #3: heldout/pers_acc_5 = <b>1</b> with local_epochs=20 lr=0.1 "
            '(<a href="trial_3">trial_3</a>)</p>') in page
    assert "<h2>Parameter importance</h2><p class='notes'>client_opt.lr: " in page  # Optuna's evaluator's numbers
    assert "<h2>Parallel coordinates</h2>" in page and "<h2>Contour</h2>" in page
    history = next(f for f in drawn if f.axes[0].get_xlabel() == "trial")
    locator = history.axes[0].xaxis.get_major_locator()
    assert isinstance(locator, MaxNLocator) and locator._integer  # whole trial numbers
