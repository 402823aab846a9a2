"""Federated algorithms: small definitions of one inner/outer loop (see base.py)."""

from pfl.algorithms.afml import AFML
from pfl.algorithms.apfl import APFL
from pfl.algorithms.base import Algorithm, ClientUpdate
from pfl.algorithms.fedavg import FedAvg, FedSGD, Reptile
from pfl.algorithms.fedavg_ft import FedAvgFT
from pfl.algorithms.fedmeta import FedMeta
from pfl.algorithms.local_only import LocalOnly
from pfl.algorithms.maml import FOMAML, MAML
from pfl.algorithms.perfedavg import PerFedAvg

__all__ = ["AFML", "APFL", "Algorithm", "ClientUpdate", "FOMAML", "MAML", "FedAvg", "FedAvgFT", "FedMeta", "FedSGD",
           "LocalOnly", "PerFedAvg", "Reptile"]
