"""Models. Each takes `forward(x, key=None)`; the key drives dropout (see pfl.rng). A model that
normalizes over the batch also takes `mask=None`, the batch's real examples (pfl.task passes it).

A model's settings are its constructor's keyword arguments with defaults (conf/model/*.yaml
sets only what differs); the arguments below come from the data set at run time instead.
"""

#: constructor arguments the run supplies from the data set (pfl.run: num_classes and data.info["model_kwargs"])
FROM_DATA = ("num_classes", "in_features", "in_channels", "vocab_size", "last_only")
