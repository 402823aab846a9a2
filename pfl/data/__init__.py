"""Federated data sets: populations of clients, partitioners, loaders."""
