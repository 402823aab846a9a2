"""Optuna sweeps driven by Hydra's multirun (`python -m pfl -m +sweep=NAME`).

A sweep definition (sweeps/NAME.yaml) selects the project's own Hydra sweeper
(hydra_plugins/pfl_optuna_sweeper) and fills the `sweep` node of the config:
search space, objectives and directions, trial budget, sampler, pruner,
storage. The sweeper asks Optuna for trials, launches one Hydra job per trial
through whatever launcher is configured (in-process, joblib, submitit) and
tells Optuna the outcome: COMPLETE with the objective values read from the
run's summary, PRUNED, or FAIL with the reason.

- objective.py: the value(s) a trial reports, read from the run's summary
(the `sweep` node's settings, validated with defaults, are pfl.config.sweep)
- space.py:    search space in Hydra's sweep syntax -> Optuna distributions
- study.py:    storage, study creation, exact trial budget across workers, heartbeats
- driver.py:   the ask / launch / tell loop the Hydra plugin runs
- pruning.py:  the Lightning callback a trial uses to report and be pruned
"""
