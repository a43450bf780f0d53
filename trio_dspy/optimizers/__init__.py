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
from .mipro import MIPROStats, MIPROv2
from .neighbours import Vectorizer, VectorizerError
from .race import Candidate, Race, RaceStats
from .random_search import BootstrapFewShotWithRandomSearch, RandomSearchStats
from .simba import SIMBA
from .stats import OptimizerStats

__all__ = [
    "COPRO",
    "GEPA",
    "SIMBA",
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
    "MIPROStats",
    "MIPROv2",
    "Optimizer",
    "OptimizerStats",
    "Race",
    "RaceStats",
    "RandomSearchStats",
    "Vectorizer",
    "VectorizerError",
]
