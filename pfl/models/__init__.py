"""Models. Each takes `forward(x, key=None)`; the key drives dropout (see pfl.rng). A model that
normalizes over the batch also takes `mask=None`, the batch's real examples (pfl.task passes it).

A model's settings are its constructor's keyword arguments with defaults (conf/model/*.yaml
sets only what differs); the arguments below come from the data set at run time instead.
Every model's last layer is a submodule named `head` (the layer algorithms such as FedRep,
FedPer, FedBABU and AFML keep or exchange by that prefix); tests/models/test_contract.py checks it.
"""

#: constructor arguments the run supplies from the data set (pfl.run: num_classes and data.info["model_kwargs"])
FROM_DATA = ("num_classes", "in_features", "in_channels", "vocab_size", "last_only")

#: parameter names that earlier versions used (a checkpoint's prefix -> today's): EmnistCNN/SmallCNN's `fc2`
RENAMED = {"fc2.": "head."}


def current_name(name: str) -> str:
    """A parameter name from an older checkpoint, under its name today."""
    for old, new in RENAMED.items():
        if name.startswith(old):
            return new + name[len(old):]
    return name
