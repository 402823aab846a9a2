"""Federated algorithms: small definitions of one inner/outer loop (see base.py)."""

from pfl.algorithms.afml import AFML
from pfl.algorithms.apfl import APFL
from pfl.algorithms.base import Algorithm, ClientUpdate
from pfl.algorithms.ditto import Ditto
from pfl.algorithms.fedala import FedALA
from pfl.algorithms.fedas import FedAS
from pfl.algorithms.fedavg import FedAvg, FedSGD, Reptile
from pfl.algorithms.fedavg_ft import FedAvgFT
from pfl.algorithms.fedbabu import FedBABU
from pfl.algorithms.fedbn import FedBN
from pfl.algorithms.fedcp import FedCP
from pfl.algorithms.feddbe import FedDBE
from pfl.algorithms.fedmeta import FedMeta
from pfl.algorithms.fedpac import FedPAC
from pfl.algorithms.fedper import FedPer
from pfl.algorithms.fedproto import FedProto
from pfl.algorithms.fedprox import FedProx
from pfl.algorithms.fedrep import FedRep
from pfl.algorithms.fedrod import FedRoD
from pfl.algorithms.gpfl import GPFL
from pfl.algorithms.knn_per import KNNPer
from pfl.algorithms.lg_fedavg import LGFedAvg
from pfl.algorithms.local_only import LocalOnly
from pfl.algorithms.maml import FOMAML, MAML
from pfl.algorithms.perfedavg import PerFedAvg
from pfl.algorithms.pfedhn import PFedHN
from pfl.algorithms.pfedme import PFedMe
from pfl.algorithms.scaffold import SCAFFOLD

__all__ = [
    "AFML",
    "Algorithm",
    "APFL",
    "ClientUpdate",
    "Ditto",
    "FedALA",
    "FedAS",
    "FedAvg",
    "FedAvgFT",
    "FedBABU",
    "FedBN",
    "FedCP",
    "FedDBE",
    "FedMeta",
    "FedPAC",
    "FedPer",
    "FedProto",
    "FedProx",
    "FedRep",
    "FedRoD",
    "FedSGD",
    "FOMAML",
    "GPFL",
    "KNNPer",
    "LGFedAvg",
    "LocalOnly",
    "MAML",
    "PerFedAvg",
    "PFedHN",
    "PFedMe",
    "Reptile",
    "SCAFFOLD",
]
