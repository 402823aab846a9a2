"""pfl's Hydra sweeper on current Optuna (discovered by Hydra in the hydra_plugins namespace)."""
