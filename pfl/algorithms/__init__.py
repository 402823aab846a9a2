"""Federated algorithms: small definitions of one inner/outer loop (see base.py)."""

from pfl.algorithms.base import Algorithm, ClientUpdate
from pfl.algorithms.fedavg import FedAvg, FedSGD, Reptile
from pfl.algorithms.maml import FOMAML, MAML

__all__ = ["Algorithm", "ClientUpdate", "FOMAML", "MAML", "FedAvg", "FedSGD", "Reptile"]
