"""Reports from finished runs: per-run plots, multi-seed aggregation, cross-run reports."""
