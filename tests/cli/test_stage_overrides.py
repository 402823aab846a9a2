"""A staged preset's stages set their own rounds, algorithm and server optimizer: overriding those at the top
level would change nothing, so the CLI refuses it in one line naming the key and the stages that own it."""

import pytest

from pfl.cli import precheck


@pytest.mark.parametrize("override, owners, hint", [
    ("rounds=3", "stage 0 'fedavg': 500, stage 1 'reptile': 200", "stages.N.rounds=3"),
    ("algorithm.local_epochs=5", "stage 0 'fedavg'", "stages.0.algorithm.local_epochs=5"),
    ("server_opt=adam", "stage 1 'reptile': torch.optim.Adam", "stages.N.server_opt.KEY=VALUE"),
])
def test_an_override_the_stages_own_is_refused(override, owners, hint):
    line = precheck(["experiment=personalized_fedavg", override])
    assert line is not None and "\n" not in line
    assert line.startswith(f"error: {override} would be ignored: with experiment=personalized_fedavg")
    assert owners in line and hint in line


def test_per_stage_overrides_and_unstaged_runs_pass():
    assert precheck(["experiment=personalized_fedavg", "stages.0.rounds=3", "stages.1.algorithm.local_steps=2"]) is None
    assert precheck(["rounds=3", "algorithm.local_epochs=2"]) is None
