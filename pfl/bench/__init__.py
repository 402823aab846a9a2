"""Benchmarks (not tests): `python -m pfl.bench.<name>`."""
