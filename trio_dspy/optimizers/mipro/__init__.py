"""MIPROv2: proposed instructions and demo sets, searched with Optuna's TPE (extra ``optimize``)."""

from .optimizer import AUTO_RUN_SETTINGS, MIPROv2, num_trials_for
from .prompts import TIPS
from .search import Trial
from .stats import MIPROStats

__all__ = ["AUTO_RUN_SETTINGS", "TIPS", "MIPROStats", "MIPROv2", "Trial", "num_trials_for"]
