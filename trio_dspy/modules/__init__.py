"""Modules: composable, callable units of LM work."""

from .chain_of_thought import ChainOfThought
from .module import Module
from .predict import Predict
from .react import ReAct
from .tool import Tool
from .trajectory import Step, ToolCallRecord, Trajectory

__all__ = [
    "ChainOfThought",
    "Module",
    "Predict",
    "ReAct",
    "Step",
    "Tool",
    "ToolCallRecord",
    "Trajectory",
]
