"""trio_dspy: program language models with typed signatures, on trio.

``import trio_dspy as td`` gives the public API; see the README.
"""

from typing import TYPE_CHECKING, Any

from . import datasets, errors, evaluate, optimizers, telemetry
from .adapters import Adapter, ChatAdapter, JSONAdapter
from .concurrency import RequestScope, as_completed, current_request, gather, request_scope
from .evaluate import Evaluate, EvaluationResult
from .lm import LM, inspect_history
from .lm.base import BaseLM
from .messages import LMRequest, LMResponse, Message
from .modules import ChainOfThought, Module, Predict, ReAct, Tool, Trajectory
from .optimizers import (
    COPRO,
    BootstrapFewShot,
    BootstrapFewShotWithRandomSearch,
    LabeledFewShot,
)
from .primitives import Example, Prediction, Usage
from .settings import Settings, configure, context
from .signature import InputField, OutputField, Signature, make_signature
from .usage import track_usage

__version__ = "0.1.0"

if TYPE_CHECKING:
    from . import testing
else:

    def __getattr__(name: str) -> Any:
        # The test kit (DummyLM, the simulated server) is not needed to run a
        # program, so ``import trio_dspy`` does not pay for it: ``td.testing``
        # and ``from trio_dspy import testing`` import it on first use. Type
        # checkers see the import above instead, and no ``__getattr__`` that
        # would make every misspelt ``td.<name>`` an ``Any``.
        if name == "testing":
            import importlib

            return importlib.import_module(".testing", __name__)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "COPRO",
    "LM",
    "Adapter",
    "BaseLM",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "ChainOfThought",
    "ChatAdapter",
    "Evaluate",
    "EvaluationResult",
    "Example",
    "InputField",
    "JSONAdapter",
    "LMRequest",
    "LMResponse",
    "LabeledFewShot",
    "Message",
    "Module",
    "OutputField",
    "Predict",
    "Prediction",
    "ReAct",
    "RequestScope",
    "Settings",
    "Signature",
    "Tool",
    "Trajectory",
    "Usage",
    "as_completed",
    "configure",
    "context",
    "current_request",
    "datasets",
    "errors",
    "evaluate",
    "gather",
    "inspect_history",
    "make_signature",
    "optimizers",
    "request_scope",
    "telemetry",
    "testing",
    "track_usage",
]
