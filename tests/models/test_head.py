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
