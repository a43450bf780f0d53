"""Optimizers: compile a program against a metric.

``compiled = await optimizer.compile(student, trainset=..., valset=None, teacher=None)``
returns an optimized copy; the student is never changed. Every example and
every candidate runs as a child task under one limit of runs in flight.
"""

from .base import Optimizer
from .bootstrap import BootstrapFewShot, BootstrapStats
from .copro import COPRO, InstructionAttempt
from .ensemble import Ensemble, EnsembledProgram
from .gepa import GEPA, GEPAResult
from .knn import KNNFewShot
from .labeled import LabeledFewShot
from .neighbours import Vectorizer, VectorizerError
from .race import Candidate, Race, RaceStats
from .random_search import BootstrapFewShotWithRandomSearch
from .stats import OptimizerStats

__all__ = [
    "COPRO",
    "GEPA",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "BootstrapStats",
    "Candidate",
    "Ensemble",
    "EnsembledProgram",
    "GEPAResult",
    "InstructionAttempt",
    "KNNFewShot",
    "LabeledFewShot",
    "Optimizer",
    "OptimizerStats",
    "Race",
    "RaceStats",
    "Vectorizer",
    "VectorizerError",
]
