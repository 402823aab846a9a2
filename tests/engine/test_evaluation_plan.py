"""Which clients an evaluation reads (personalization.population, interim samples) and rounds to target
at one-round resolution (personalization.track_*; pfl.engine.targets)."""

import csv
from types import SimpleNamespace

import pytest

from pfl.engine import names
from pfl.engine.targets import flops_until, own_targets, rounds_to_targets
from pfl.evaluation.settings import PersonalizationSettings
from pfl.run import train
from tests.helpers import TINY_PAPER2, compose_cfg, tiny


def _cfg(*overrides):
    return compose_cfg([*tiny(TINY_PAPER2), "personalization.epochs=[1,2]", "personalization.curve_epochs=3",
                        *overrides], tiny=False)


def _fake(history, track_history, track_epochs=(), track_every=1, eval_every=4):
    """A module-shaped record: what pfl.engine.targets reads."""
    p = PersonalizationSettings(epochs=[1, 5], track_epochs=list(track_epochs), track_every=track_every,
                                track_clients=3)
    stages = [SimpleNamespace(name="a", rounds=4), SimpleNamespace(name="b", rounds=4)]
    return SimpleNamespace(personalization=p, report_epochs=[1, 5], history=history, track_history=track_history,
                           eval_every=eval_every, stages=stages, flops={"a": 10, "b": 100},
                           sample=lambda pop, n: list(range(n or 9)), eval_clients=lambda pop: list(range(9)))


def _eval(r, init, p1, curve):
    return {names.ROUND: r, names.initial(): init, names.pers(1): p1, names.pers(5): curve[5], names.curve(): curve,
            names.BYTES_DOWN_TOTAL: 100 * r, names.BYTES_UP_TOTAL: 10 * r}


def _tracked(r, init, p3=None):
    row = {names.ROUND: r, names.tracked(0): init, names.BYTES_DOWN_TOTAL: 100 * r, names.BYTES_UP_TOTAL: 10 * r}
    if p3 is not None:
        row[names.tracked(3)] = p3
    return row


def test_rounds_to_target_from_a_hand_made_history():
    history = [_eval(4, 0.5, 0.6, [0.5, 0.6, 0, 0.79, 0, 0.7]), _eval(8, 0.9, 0.9, [0.9, 0.9, 0, 0.85, 0, 0.95])]
    tracked = [_tracked(r, v, p3) for r, v, p3 in [(1, 0.1, 0.2), (2, 0.3, 0.81), (3, 0.85, 0.7), (5, 0.7, 0.9)]]
    # tracking off: every quantity from the evaluations (every 4 rounds); k = 3 read from the curve
    rtt, res = rounds_to_targets(_fake(history, tracked, track_every=0), 0.8)
    assert rtt == {"initial": 8, "1": 8, "5": 8, "personalized_1": 8, "personalized_5": 8}
    assert res["initial"] == {"series": "evaluation", "every": 4, "clients": 9}
    # tracking on for initial accuracy and Pers.3: the first tracked round at or above 0.8, not interpolated
    rtt, res = rounds_to_targets(_fake(history, tracked, track_epochs=[3]), 0.8)
    assert (rtt["initial"], rtt["3"], rtt["1"], rtt["5"]) == (3, 2, 8, 8)
    assert res["3"] == {"series": "tracked", "every": 1, "clients": 3} and res["5"]["series"] == "evaluation"
    assert rounds_to_targets(_fake(history, tracked), 0.99)[0]["initial"] is None  # never reached


def test_own_target_bytes_and_flops_by_hand():
    tracked = [_tracked(r, v) for r, v in [(1, 0.1), (2, 0.5), (6, 0.96), (8, 1.0)]]
    history = [_eval(4, 0.5, 0.6, [0.5, 0.6, 0, 0, 0, 0.7]), _eval(8, 0.9, 0.8, [0.9, 0.8, 0, 0, 0, 0.8])]
    own = own_targets(_fake(history, tracked), 0.95)
    # initial: final 1.0 (the tracked series' last), target 0.95, first reached at round 6
    assert own["initial"]["round"] == 6 and own["initial"]["target"] == pytest.approx(0.95)
    assert (own["initial"]["bytes_down"], own["initial"]["bytes_up"], own["initial"]["bytes"]) == (600, 60, 660)
    assert own["initial"]["flops"] == 4 * 10 + 2 * 100  # 4 rounds of stage a, 2 of stage b
    # Pers.5: final 0.8 at round 8, 0.95 * 0.8 = 0.76 > 0.7: round 8
    assert own["5"]["round"] == 8 and own["5"]["flops"] == flops_until(_fake([], []), 8) == 440
    assert own["fraction"] == 0.95


def test_tracking_finds_a_round_between_evaluations(tmp_path):
    common = ["rounds=3", "eval_every=2", "personalization.target_accuracy=0.01", "personalization.track_epochs=[3]",
              "personalization.track_clients=null"]
    s = train(_cfg(*common), tmp_path / "on")
    assert s["rounds_to_target"]["initial"] == 1 and s["rounds_to_target"]["3"] == 1  # 1 is no multiple of 2
    assert s["rounds_to_target_resolution"]["3"]["every"] == 1
    with open(tmp_path / "on" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get(names.tracked(3))]
    assert [int(r["round"]) for r in rows] == [1, 2, 3]
    # the tracked sample is all held-out clients here: its numbers equal the evaluation's in the same row
    ev = [r for r in rows if r.get(names.initial())]
    assert ev and all(float(r[names.tracked(0)]) == float(r[names.initial()]) for r in ev)
    off = train(_cfg(*common, "personalization.track_every=0"), tmp_path / "off")
    assert off["rounds_to_target"]["initial"] == 2 and off["rounds_to_target"]["3"] == 2


def test_population_train_and_both_with_local_baseline(tmp_path):
    lb = ["personalization.local_baseline=true", "personalization.local_epochs=1", "personalization.local_lr=0.05",
          "personalization.train_clients=null", "personalization.track_every=0"]
    s = train(_cfg("personalization.population=train", *lb), tmp_path / "train")
    assert s["population"] == "train" and s["heldout_clients"] == {}
    assert s["initial_accuracy"] == s["train_clients"]["initial_accuracy"]
    assert s["local_baseline"]["population"] == "train"
    with open(tmp_path / "train" / "clients_train.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and all("acc_local" in r for r in rows)  # every training client of TINY_PAPER2
    assert not (tmp_path / "train" / "clients_heldout.csv").exists()
    b = train(_cfg("personalization.population=both", *lb), tmp_path / "both")
    assert b["population"] == "train" and b["personalized_accuracy"] == s["personalized_accuracy"]
    assert b["heldout_clients"]["initial_accuracy"] is not None
    assert b["local_baseline"] == s["local_baseline"]  # Acc_local for the headline (training) clients only


def test_interim_evaluations_sample_the_last_is_complete(tmp_path):
    s = train(_cfg("rounds=4", "eval_every=2", "personalization.train_clients=null", "personalization.interim_clients=2",
                   "personalization.interim_curve_epochs=0", "personalization.track_every=0"), tmp_path)
    with open(tmp_path / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get(names.EVAL_CLIENTS)]
    assert [(int(r["round"]), int(r[names.EVAL_CLIENTS])) for r in rows] == [(2, 4), (4, 6 + 8)]  # 2 + 2, then all
    assert len(s["personalization_curve"]) == 4  # the last: k = 0..curve_epochs
