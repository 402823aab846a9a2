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
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 3  # Pareto, objective/params, convergence
    assert 'href="trial_0"' in page


def test_report_of_an_empty_directory_is_a_one_line_error(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
