"""Modules: composable, callable units of LM work."""

from .chain_of_thought import ChainOfThought
from .module import Module
from .predict import Predict

__all__ = ["ChainOfThought", "Module", "Predict"]
