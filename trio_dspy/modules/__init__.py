"""Modules: composable, callable units of LM work."""

from .aggregation import majority
from .best_of_n import AttemptCounts, BestOfN, BestOfNPrediction, Refine
from .chain_of_thought import ChainOfThought
from .module import Module
from .multi_chain_comparison import MultiChainComparison
from .predict import Predict
from .react import ReAct
from .tool import Tool
from .trajectory import Step, ToolCallRecord, Trajectory

__all__ = [
    "AttemptCounts",
    "BestOfN",
    "BestOfNPrediction",
    "ChainOfThought",
    "Module",
    "MultiChainComparison",
    "Predict",
    "ReAct",
    "Refine",
    "Step",
    "Tool",
    "ToolCallRecord",
    "Trajectory",
    "majority",
]
