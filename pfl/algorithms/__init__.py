"""Federated algorithms: small definitions of one inner/outer loop (see base.py)."""

from pfl.algorithms.base import Algorithm, ClientUpdate
from pfl.algorithms.fedavg import FedAvg, FedSGD, Reptile

__all__ = ["Algorithm", "ClientUpdate", "FedAvg", "FedSGD", "Reptile"]
