"""Every shipped model's last layer is a submodule named `head`, and checkpoints of the old names load."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pfl.engine.replica_state import rename_legacy
from pfl.models import current_name
from tests.models.test_contract import MODELS, batch, build_model, datasets_for


@pytest.mark.parametrize("model", MODELS)
def test_the_last_layer_is_head(model):
    net, spec = build_model(model, datasets_for(model)[0])
    assert isinstance(getattr(net, "head", None), nn.Module), f"model={model} has no submodule named head"
    seen = []
    net.head.register_forward_hook(lambda module, args, out: seen.append(out))
    x, _ = batch(spec, 2, seed=3)
    with torch.no_grad():
        logits = net(x)
    assert seen and torch.equal(seen[-1], logits), f"model={model}: the logits are not what `head` returned"


def test_a_checkpoint_of_the_old_names_loads():
    class Module(nn.Module):
        def __init__(self):
            super().__init__()
            self.global_params = nn.ParameterDict({"conv1__weight": nn.Parameter(torch.zeros(1)),
                                                   "head__weight": nn.Parameter(torch.zeros(2))})
            self.client_state = nn.ParameterDict({"head__bias": nn.Parameter(torch.zeros(3))})

    old = {"global_params.conv1__weight": torch.ones(1), "global_params.fc2__weight": torch.ones(2),
           "client_state.fc2__bias": torch.ones(3)}
    ckpt = {"state_dict": dict(old)}
    rename_legacy(Module(), ckpt)
    assert set(ckpt["state_dict"]) == {"global_params.conv1__weight", "global_params.head__weight",
                                       "client_state.head__bias"}
    Module().load_state_dict(ckpt["state_dict"])  # strict: every name matches
    assert current_name("fc2.weight") == "head.weight" and current_name("fc1.weight") == "fc1.weight"


def test_the_head_is_a_convention_not_a_setting():
    """No algorithm has a `head` setting: `algorithm.head=...` is an unknown setting, and a model
    without a `head` fails with one line naming the model and the convention."""
    import dataclasses

    from pfl.algorithms.head_split import HeadSplit
    from pfl.config.errors import ConfigError, UnknownSetting
    from pfl.config.schema import option_target, options
    from pfl.config.settings import locate, validate_node
    from pfl.task import Task

    for option in options("algorithm"):
        target = option_target("algorithm", option)
        assert "head" not in {f.name for f in dataclasses.fields(locate(target))}, f"algorithm={option} has a head setting"
    with pytest.raises(UnknownSetting, match="algorithm.head"):
        validate_node({"_target_": option_target("algorithm", "fedrep"), "head": "fc2"}, "algorithm")

    class NoHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x, key=None):
            return self.fc(x)

    with pytest.raises(ConfigError, match="model='NoHead'.*submodule named `head`"):
        HeadSplit(Task(NoHead()))
