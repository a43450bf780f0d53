"""Modules: composable, callable units of LM work."""

from .chain_of_thought import ChainOfThought
from .module import Module
from .predict import Predict
from .react import ReAct, Step, ToolCallRecord, Trajectory
from .tool import Tool

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
