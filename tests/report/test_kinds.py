"""`python -m pfl.report` reads each kind of folder as what it is: one run, a seed grid, a hyper-parameter grid."""

import json

from pfl.report.__main__ import main


def _run(d, overrides, acc, seed=0):
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    final = {"heldout/initial_acc": acc, "heldout/pers_acc_5": acc + 0.2}
    (d / "summary.json").write_text(json.dumps({"algorithm": "fedavg", "dataset": "synthetic", "seed": seed,
                                                "initial_accuracy": acc, "personalized_accuracy": {"5": acc + 0.2},
                                                "final": final}))
    (d / "metrics.csv").write_text("round,train/loss,heldout/initial_acc,heldout/pers_acc_5\n1,2.0,,\n"
                                   f"2,1.5,{acc - 0.1},{acc}\n3,1.2,,\n4,1.0,{acc},{acc + 0.2}\n")


def test_single_run(tmp_path):
    from matplotlib.figure import Figure

    from pfl.report.figures import png

    run = tmp_path / "run"
    _run(run, ["rounds=4"], 0.5)
    (run / "plots").mkdir()
    (run / "plots" / "accuracy_vs_round.png").write_bytes(png(Figure(figsize=(1, 1))))
    assert main([str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "single run" in page and "fedavg on synthetic" in page and "Pareto" not in page
    assert 'href="metrics.csv"' in page and 'href="."' not in page
    assert page.count("data:image/png;base64,") == 1 and "heldout/pers_acc_5" in page


def test_seed_grid_gives_mean_and_std_and_no_pareto_front(tmp_path):
    for s, acc in enumerate((0.4, 0.5, 0.6)):
        _run(tmp_path / str(s), ["algorithm=fedavg", f"seed={s}"], acc, seed=s)
    assert main([str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "seed grid" in page and "Hydra multirun" not in page and "Pareto" not in page
    assert "0.5 ± 0.1 (n=3)" in page and "0.7 ± 0.1 (n=3)" in page  # initial, pers. 5: mean ± sample std
    assert "Convergence over seeds" in page


def test_hyperparameter_grid(tmp_path):
    for i, lr in enumerate((0.01, 0.1)):
        _run(tmp_path / str(i), [f"client_opt.lr={lr}", "seed=0"], 0.4 + i / 10)
    assert main([str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "Hydra grid (hyper-parameters)" in page and "Pareto" not in page
    assert "Objective against each parameter" in page and "<th>client_opt.lr</th>" in page
