"""A sweep's per-job log line: the searched parameters only, short names, 3 significant digits."""

import logging

from pfl.sweep.log_lines import short_job_lines, short_params


def test_a_launchers_job_line_shows_only_the_searched_parameters(caplog):
    line = ("\t#3 : algorithm=fedavg client_opt.lr=0.05912345678901234 algorithm.local_epochs=11 "
            "++sweep={name:fedavg_e_lr,objectives:[heldout/pers_acc_5],directions:[maximize]} "
            "++sweep.study='fedavg_e_lr' ++sweep.storage='sqlite:////tmp/x/optuna.db' ++sweep.trial=3 "
            "hydra.sweep.subdir='trial_3'")
    launcher = logging.getLogger("hydra._internal.core_plugins.basic_launcher")
    with caplog.at_level(logging.INFO, logger=launcher.name):
        with short_job_lines(["client_opt.lr", "algorithm.local_epochs"]):
            launcher.info(line)
        launcher.info("\t#4 : a=1")  # the filter is gone after the sweep
    assert [r.getMessage() for r in caplog.records] == ["#3 lr=0.0591 local_epochs=11", "\t#4 : a=1"]


def test_short_names_stay_distinct():
    assert short_params({"stages.0.rounds": 3, "stages.1.rounds": 4, "client_opt.lr": 0.1}) == (
        "stages.0.rounds=3 stages.1.rounds=4 lr=0.1")
