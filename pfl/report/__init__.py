"""Reports across runs: `python -m pfl.report <multirun or sweep directory>` writes one HTML page."""
