"""Multi-seed aggregation (pfl.report.seeds) on hand-made run directories."""

import csv
import json

import pytest

from pfl.report import seeds


def _job(root, num, overrides, **summary):
    d = root / str(num)
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (d / "summary.json").write_text(json.dumps(summary))
    return d


def test_groups_by_setting_without_seed_and_gives_mean_and_sample_std(tmp_path):
    for i, (e, seed, acc, r80) in enumerate([(2, 0, 0.5, 100), (2, 1, 0.7, None), (2, 2, 0.9, 300), (5, 0, 0.8, 50)]):
        _job(tmp_path, i, [f"algorithm.local_epochs={e}", f"seed={seed}", "experiment=jiang2019_table1"],
             seed=seed, initial_accuracy=acc, personalized_accuracy={"5": acc + 0.1},
             rounds_to_target={"initial": r80}, personalization_curve=[acc, acc + 0.1], algorithm="fedavg")
    groups = {g["setting"]: g for g in seeds.aggregate(seeds.find_runs(tmp_path))}
    assert set(groups) == {"algorithm.local_epochs=2 experiment=jiang2019_table1",
                           "algorithm.local_epochs=5 experiment=jiang2019_table1"}
    e2 = groups["algorithm.local_epochs=2 experiment=jiang2019_table1"]
    assert sorted(e2["seeds"]) == [0, 1, 2]
    st = e2["stats"]
    assert st["initial_accuracy"]["mean"] == pytest.approx(0.7)
    assert st["initial_accuracy"]["std"] == pytest.approx(0.2)  # sqrt(((.2)^2 + 0 + (.2)^2) / 2)
    assert st["personalized_accuracy.5"]["mean"] == pytest.approx(0.8)
    assert st["personalization_curve.1"]["mean"] == pytest.approx(0.8)
    # a target never reached (null) is left out of that value's n
    assert st["rounds_to_target.initial"] == {"mean": 200.0, "std": pytest.approx(141.42135623730952), "n": 2}
    assert "seed" in st and st["seed"]["n"] == 3
    e5 = groups["algorithm.local_epochs=5 experiment=jiang2019_table1"]["stats"]
    assert e5["initial_accuracy"] == {"mean": 0.8, "std": 0.0, "n": 1}


def test_cli_writes_json_and_csv(tmp_path, capsys):
    for s in range(2):
        _job(tmp_path / "multi", s, [f"seed={s}"], seed=s, initial_accuracy=0.1 * (s + 1), personalized_accuracy={"1": 0.5})
    assert seeds.main([str(tmp_path / "multi"), "--out", str(tmp_path / "out")]) == 0
    with open(tmp_path / "out" / "seeds.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["setting"] == "(defaults)" and rows[0]["runs"] == "2"
    assert float(rows[0]["initial_accuracy_mean"]) == pytest.approx(0.15)
    assert float(rows[0]["personalized_accuracy.1_std"]) == 0.0
    assert json.loads((tmp_path / "out" / "seeds.json").read_text())[0]["stats"]["initial_accuracy"]["n"] == 2
    assert "initial_accuracy=0.1500" in capsys.readouterr().out
    assert seeds.main([str(tmp_path / "empty")]) == 2


def test_bands_and_scatter_of_replicas(tmp_path):
    """The first paper's Figure 1 (mean ± std per round) and Figure 3 (one point per replica)."""
    for s, (a, b) in enumerate([(0.2, 0.5), (0.4, 0.7), (0.6, 0.9)]):
        d = _job(tmp_path, s, [f"seed={s}"], seed=s, initial_accuracy=b - 0.1, personalized_accuracy={"1": b, "5": b + 0.05})
        rows = ["round,heldout/initial_acc,heldout/pers_acc_5", f"1,{a},{a + 0.1}", "2,,", f"3,{b},{b + 0.1}"]
        (d / "metrics.csv").write_text("\n".join(rows) + "\n")
    runs = [str(tmp_path / str(s)) for s in range(3)]
    rounds, mean, std = seeds.band_series(runs, "heldout/pers_acc_5")
    assert rounds == [1.0, 3.0]  # rounds without an evaluation are skipped
    assert mean == pytest.approx([0.5, 0.8]) and std == pytest.approx([0.2, 0.2])
    written = seeds.write_plots(seeds.aggregate(seeds.find_runs(tmp_path)), tmp_path)
    assert [p.name for p in written] == ["seeds_bands.png", "seeds_scatter.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)
