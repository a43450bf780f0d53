"""trio_dspy: program language models with typed signatures, on trio.

``import trio_dspy as td`` gives the public API; see the README.
"""

from __future__ import annotations

# Private names: ``types`` would hide the package's own ``trio_dspy.types``.
import sys as _sys
from types import ModuleType as _ModuleType

# ``typing`` is not imported at run time: it costs more than this whole
# module, and type checkers read this name as ``typing.TYPE_CHECKING``.
TYPE_CHECKING = False

__version__ = "0.1.0"

# Every public name is imported on first use: ``import trio_dspy`` runs none
# of the package's modules (a program that names ``td.Predict`` pays for the
# modules it uses then; the test kit, evaluation, the optimizers and the
# datasets only when named). ``td.Evaluate``, ``td.testing`` and ``from trio_dspy import
# testing`` work as for any other name. name -> (module, attribute or None).
_LAZY: dict[str, tuple[str, str | None]] = {
    "errors": (".errors", None),
    "telemetry": (".telemetry", None),
    "Adapter": (".adapters", "Adapter"),
    "ChatAdapter": (".adapters", "ChatAdapter"),
    "JSONAdapter": (".adapters", "JSONAdapter"),
    "RequestScope": (".concurrency", "RequestScope"),
    "as_completed": (".concurrency", "as_completed"),
    "current_request": (".concurrency", "current_request"),
    "gather": (".concurrency", "gather"),
    "request_scope": (".concurrency", "request_scope"),
    "inspect_history": (".lm", "inspect_history"),
    "BaseLM": (".lm.base", "BaseLM"),
    "LMRequest": (".messages", "LMRequest"),
    "LMResponse": (".messages", "LMResponse"),
    "Message": (".messages", "Message"),
    "BestOfN": (".modules", "BestOfN"),
    "ChainOfThought": (".modules", "ChainOfThought"),
    "Module": (".modules", "Module"),
    "MultiChainComparison": (".modules", "MultiChainComparison"),
    "Predict": (".modules", "Predict"),
    "ReAct": (".modules", "ReAct"),
    "Refine": (".modules", "Refine"),
    "Tool": (".modules", "Tool"),
    "Trajectory": (".modules", "Trajectory"),
    "majority": (".modules", "majority"),
    "Completions": (".primitives", "Completions"),
    "Example": (".primitives", "Example"),
    "Prediction": (".primitives", "Prediction"),
    "Usage": (".primitives", "Usage"),
    "run": (".runner", "run"),
    "Settings": (".settings", "Settings"),
    "configure": (".settings", "configure"),
    "context": (".settings", "context"),
    "InputField": (".signature", "InputField"),
    "OutputField": (".signature", "OutputField"),
    "Signature": (".signature", "Signature"),
    "make_signature": (".signature", "make_signature"),
    "StatusMessage": (".streaming", "StatusMessage"),
    "StreamResponse": (".streaming", "StreamResponse"),
    "streamify": (".streaming", "streamify"),
    "Audio": (".types", "Audio"),
    "Code": (".types", "Code"),
    "File": (".types", "File"),
    "History": (".types", "History"),
    "Image": (".types", "Image"),
    "Reasoning": (".types", "Reasoning"),
    "track_usage": (".usage", "track_usage"),
    "usage_limits": (".usage_limits", "usage_limits"),
    "testing": (".testing", None),
    "XMLAdapter": (".adapters.xml", "XMLAdapter"),
    "TwoStepAdapter": (".adapters.two_step", "TwoStepAdapter"),
    "LM": (".lm", "LM"),
    "FallbackLM": (".lm", "FallbackLM"),
    "datasets": (".datasets", None),
    "mcp": (".mcp", None),
    "evaluate": (".evaluate", None),
    "optimizers": (".optimizers", None),
    "Evaluate": (".evaluate", "Evaluate"),
    "EvaluationResult": (".evaluate", "EvaluationResult"),
    "COPRO": (".optimizers", "COPRO"),
    "BootstrapFewShot": (".optimizers", "BootstrapFewShot"),
    "BootstrapFewShotWithRandomSearch": (".optimizers", "BootstrapFewShotWithRandomSearch"),
    "LabeledFewShot": (".optimizers", "LabeledFewShot"),
    "GEPA": (".optimizers", "GEPA"),
    "SIMBA": (".optimizers", "SIMBA"),
    "MIPROv2": (".optimizers", "MIPROv2"),
    "KNNFewShot": (".optimizers", "KNNFewShot"),
    "Ensemble": (".optimizers", "Ensemble"),
    "Embedder": (".embedder", "Embedder"),
    "KNN": (".retrievers", "KNN"),
    "retrievers": (".retrievers", None),
    "RedisCache": (".lm.redis_cache", "RedisCache"),
    "RedisLimits": (".lm.redis_limits", "RedisLimits"),
    "Parallel": (".parallel", "Parallel"),
    "asyncify": (".parallel", "asyncify"),
    "StreamListener": (".stream_names", "StreamListener"),
    "StatusMessageProvider": (".stream_names", "StatusMessageProvider"),
    "sessions": (".sessions", None),
    "chat": (".sessions", "chat"),
    "serving": (".serving", None),
    "guarded": (".guardrails", "guarded"),
    "GuardrailResult": (".guardrails", "GuardrailResult"),
    "journal": (".journal", None),
    "Journal": (".journal.sqlite", "Journal"),
    "RedisJournal": (".journal.redis", "RedisJournal"),
    "durable": (".journal.run", "durable"),
    "ToolCalls": (".modules.tool_calls", "ToolCalls"),
}

if TYPE_CHECKING:
    from typing import Any

    # What type checkers and IDEs see instead of ``__getattr__``, which would
    # make every misspelt ``td.<name>`` an ``Any``.
    from . import (
        datasets,
        errors,
        evaluate,
        journal,
        mcp,
        optimizers,
        retrievers,
        serving,
        sessions,
        telemetry,
        testing,
    )
    from .adapters import Adapter, ChatAdapter, JSONAdapter
    from .adapters.two_step import TwoStepAdapter
    from .adapters.xml import XMLAdapter
    from .concurrency import RequestScope, as_completed, current_request, gather, request_scope
    from .embedder import Embedder
    from .evaluate import Evaluate, EvaluationResult
    from .guardrails import GuardrailResult, guarded
    from .journal.redis import RedisJournal
    from .journal.run import durable
    from .journal.sqlite import Journal
    from .lm import LM, FallbackLM, inspect_history
    from .lm.base import BaseLM
    from .lm.redis_cache import RedisCache
    from .lm.redis_limits import RedisLimits
    from .messages import LMRequest, LMResponse, Message
    from .modules import (
        BestOfN,
        ChainOfThought,
        Module,
        MultiChainComparison,
        Predict,
        ReAct,
        Refine,
        Tool,
        Trajectory,
        majority,
    )
    from .modules.tool_calls import ToolCalls
    from .optimizers import (
        COPRO,
        GEPA,
        SIMBA,
        BootstrapFewShot,
        BootstrapFewShotWithRandomSearch,
        Ensemble,
        KNNFewShot,
        LabeledFewShot,
        MIPROv2,
    )
    from .parallel import Parallel, asyncify
    from .primitives import Completions, Example, Prediction, Usage
    from .retrievers import KNN
    from .runner import run
    from .sessions import chat
    from .settings import Settings, configure, context
    from .signature import InputField, OutputField, Signature, make_signature
    from .stream_names import StatusMessageProvider, StreamListener
    from .streaming import StatusMessage, StreamResponse, streamify
    from .types import Audio, Code, File, History, Image, Reasoning
    from .usage import track_usage
    from .usage_limits import usage_limits
else:

    def __getattr__(name: str) -> Any:
        import importlib
        import importlib.util

        try:
            module, attribute = _LAZY[name]
        except KeyError:
            if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
                # A submodule (``td.types``, ``td.settings``): imported when named,
                # as the eager imports of earlier releases had it.
                return importlib.import_module(f"{__name__}.{name}")
            from .aliases import DSPY_ONLY_NAMES

            if name in DSPY_ONLY_NAMES:
                raise AttributeError(
                    f"td.{name} is DSPy's, not provided here: {DSPY_ONLY_NAMES[name]}"
                ) from None
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        value = importlib.import_module(module, __name__)
        if attribute is not None:
            value = getattr(value, attribute)
        globals()[name] = value
        return value

    class _Package(_ModuleType):
        """The package's module: ``td.usage_limits`` stays the function.

        Importing a submodule binds it as an attribute of its package; the
        function ``usage_limits`` has its module's name, and ``import
        trio_dspy.usage_limits`` (anywhere, before ``td.usage_limits`` was
        read) must not put the module in its place.
        """

        def __setattr__(self, name: str, value: Any) -> None:
            if name == "usage_limits" and isinstance(value, _ModuleType):
                value = value.usage_limits
            super().__setattr__(name, value)

    _sys.modules[__name__].__class__ = _Package


__all__ = [
    "COPRO",
    "GEPA",
    "KNN",
    "LM",
    "SIMBA",
    "Adapter",
    "Audio",
    "BaseLM",
    "BestOfN",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "ChainOfThought",
    "ChatAdapter",
    "Code",
    "Completions",
    "Embedder",
    "Ensemble",
    "Evaluate",
    "EvaluationResult",
    "Example",
    "FallbackLM",
    "File",
    "GuardrailResult",
    "History",
    "Image",
    "InputField",
    "JSONAdapter",
    "Journal",
    "KNNFewShot",
    "LMRequest",
    "LMResponse",
    "LabeledFewShot",
    "MIPROv2",
    "Message",
    "Module",
    "MultiChainComparison",
    "OutputField",
    "Parallel",
    "Predict",
    "Prediction",
    "ReAct",
    "Reasoning",
    "RedisCache",
    "RedisJournal",
    "RedisLimits",
    "Refine",
    "RequestScope",
    "Settings",
    "Signature",
    "StatusMessage",
    "StatusMessageProvider",
    "StreamListener",
    "StreamResponse",
    "Tool",
    "ToolCalls",
    "Trajectory",
    "TwoStepAdapter",
    "Usage",
    "XMLAdapter",
    "as_completed",
    "asyncify",
    "chat",
    "configure",
    "context",
    "current_request",
    "datasets",
    "durable",
    "errors",
    "evaluate",
    "gather",
    "guarded",
    "inspect_history",
    "journal",
    "majority",
    "make_signature",
    "mcp",
    "optimizers",
    "request_scope",
    "retrievers",
    "run",
    "serving",
    "sessions",
    "streamify",
    "telemetry",
    "testing",
    "track_usage",
    "usage_limits",
]
