"""Errors that used to lose information: Hydra's reason on an unparsable override, "did you mean" for an
option of every group, `+trainer.NAME=` for a pl.Trainer argument, and a mistake inside a user's YAML file
(in one line, with the file and the key)."""

import pytest

from pfl.cli import precheck


@pytest.mark.parametrize("args, reason", [
    (["client_opt.lr==0.1"], "extraneous input '='"),
    (["algorithm.local_epochs", "5"], "missing EQUAL at '<EOF>'"),
])
def test_an_unparsable_override_keeps_hydras_reason(args, reason):
    line = precheck(args)
    assert line.startswith(f"error: cannot parse the override '{args[0]}': ") and reason in line
    assert "KEY=VALUE" in line and "\n" not in line


@pytest.mark.parametrize("override, near", [
    ("algorithm=fedavgg", "fedavg"), ("logger=tensorbord", "tensorboard"), ("model=mpl", "mlp"),
    ("dataset=synthtic", "synthetic"), ("server_opt=adma", "adam"), ("experiment=personalized_fedvg", "personalized_fedavg"),
])
def test_a_misspelt_option_of_any_group_gets_a_suggestion(override, near):
    line = precheck([override])
    assert line.startswith(f"error: {override} is not an option; did you mean '{near}'? choose one of: ")


def test_an_unknown_trainer_key_points_to_the_plus_form():
    line = precheck(["trainer.max_epoch=3"])
    assert "did you mean '+trainer.max_epochs=...'?" in line and "+trainer.NAME=VALUE" in line
    assert "did you mean 'trainer.precision'?" in precheck(["trainer.precison=16"])


def test_a_mistake_in_a_users_yaml_names_the_file_and_the_key(tmp_path):
    (tmp_path / "experiment").mkdir()
    mine = tmp_path / "experiment" / "mine.yaml"
    mine.write_text("# @package _global_\nrounds: 5\nalgorithm:\n  local_epoch: 3\n")
    line = precheck(["--config-dir", str(tmp_path), "experiment=mine"])
    assert line == (f"error: unknown setting 'algorithm.local_epoch'; did you mean 'algorithm.local_epochs'? (the keys "
                    f"of algorithm are listed by `python -m pfl --cfg job -p algorithm`) (in {mine})")
    mine.write_text("# @package _global_\nrounds: abc\n")
    assert precheck([f"--config-dir={tmp_path}", "experiment=mine"]) == (
        f"error: rounds=abc is not allowed: expected an integer (in {mine})")
    broken = tmp_path / "experiment" / "broken.yaml"
    broken.write_text("rounds: [5\n")
    line = precheck(["-cd", str(tmp_path), "experiment=broken"])
    assert line.startswith(f"error: {broken} line 2 column 1: expected ',' or ']'") and "\n" not in line
