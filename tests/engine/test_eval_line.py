"""The console's evaluation line says how many clients it measured and, with replicas, mean ± std; the
final table has the replicas' std under each row."""

from pfl.engine.eval_line import eval_line
from pfl.engine.summary import format_table


def test_an_interim_line_names_its_sample_and_a_replicated_one_its_spread():
    one = [{"heldout/initial_acc": 0.5, "heldout/pers_acc_5": 0.8, "heldout/frac_worse": 0.1, "round": 25}]
    assert eval_line(25, "heldout", one, 10, 500, 1.24) == \
        "round 25: heldout initial_acc=0.5000, pers_acc_5=0.8000 (sample of 10 of 500 clients) (evaluation 1.2 s)"
    three = [{"heldout/initial_acc": a, "heldout/pers_acc_5": b} for a, b in ((0.5, 0.8), (0.6, 0.7), (0.7, 0.9))]
    assert eval_line(100, "heldout", three, 500, 500, 9.8) == (
        "round 100: heldout initial_acc=0.6000 ± 0.1000, pers_acc_5=0.8000 ± 0.1000 "
        "(mean ± std of 3 replicas; all 500 clients) (evaluation 9.8 s)")


def test_the_final_table_shows_the_replicas_std():
    summary = {"algorithm": "fedavg", "dataset": "synthetic", "rounds": 4, "wall_time_s": 1.0, "backend": "vmap",
               "initial_accuracy": 0.6, "personalized_accuracy": {"5": 0.8},
               "heldout_clients": {"initial_accuracy": 0.6, "personalized_accuracy": {"5": 0.8}},
               "train_clients": {"initial_accuracy": 0.55, "personalized_accuracy": {"5": 0.75}},
               "replicas": [{}, {}, {}],
               "std": {"initial_accuracy": 0.1, "personalized_accuracy.5": 0.05,
                       "train_clients.initial_accuracy": 0.02, "train_clients.personalized_accuracy.5": 0.03}}
    lines = format_table(summary).splitlines()
    assert lines[2:] == [
        "held-out      0.6000    0.8000",
        "  ± std       0.1000    0.0500   (sample std over 3 replicas)",
        "training      0.5500    0.7500",
        "  ± std       0.0200    0.0300   (sample std over 3 replicas)",
    ]
