"""Models. Each takes `forward(x, key=None)`; the key drives dropout (see pfl.rng)."""
