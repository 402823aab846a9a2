"""Models. Each takes `forward(x, key=None)`; the key drives dropout (see pfl.rng). A model that
normalizes over the batch also takes `mask=None`, the batch's real examples (pfl.task passes it).

A model's settings are its constructor's keyword arguments with defaults (conf/model/*.yaml
sets only what differs); the arguments below come from the data set at run time instead.
Every model's last layer is a submodule named `head` (HEAD: the layer algorithms such as FedRep,
FedPer, FedBABU and AFML keep or exchange by that prefix; a convention, not a setting);
tests/models/test_head.py checks it.
"""

#: the name of every model's last layer, logits = head(z) (pfl.algorithms.head_split splits by it)
HEAD = "head"

#: constructor arguments the run supplies from the data set (pfl.run: num_classes and data.info["model_kwargs"])
FROM_DATA = ("num_classes", "in_features", "in_channels", "vocab_size", "last_only")

#: parameter names that earlier versions used (a checkpoint's prefix -> today's): EmnistCNN/SmallCNN's `fc2`
RENAMED = {"fc2.": HEAD + "."}


def current_name(name: str) -> str:
    """A parameter name from an older checkpoint, under its name today."""
    for old, new in RENAMED.items():
        if name.startswith(old):
            return new + name[len(old):]
    return name
