"""trio_dspy: program language models with typed signatures, on trio.

``import trio_dspy as td`` gives the public API; see the README.
"""

from typing import TYPE_CHECKING, Any

from . import errors, telemetry
from .adapters import Adapter, ChatAdapter, JSONAdapter
from .concurrency import RequestScope, as_completed, current_request, gather, request_scope
from .lm import inspect_history
from .lm.base import BaseLM
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
from .primitives import Completions, Example, Prediction, Usage
from .runner import run
from .settings import Settings, configure, context
from .signature import InputField, OutputField, Signature, make_signature
from .streaming import StatusMessage, StreamResponse, streamify
from .types import Audio, Code, File, History, Image, Reasoning
from .usage import track_usage
from .usage_limits import usage_limits

__version__ = "0.1.0"

# Imported on first use: the test kit, evaluation, the optimizers and the
# datasets are not needed to run a program, so ``import trio_dspy`` does not
# pay for them. ``td.Evaluate``, ``td.testing`` and ``from trio_dspy import
# testing`` work as for any other name. name -> (module, attribute or None).
_LAZY: dict[str, tuple[str, str | None]] = {
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
    # What type checkers and IDEs see instead of ``__getattr__``, which would
    # make every misspelt ``td.<name>`` an ``Any``.
    from . import (
        datasets,
        evaluate,
        journal,
        mcp,
        optimizers,
        retrievers,
        serving,
        sessions,
        testing,
    )
    from .adapters.two_step import TwoStepAdapter
    from .adapters.xml import XMLAdapter
    from .embedder import Embedder
    from .evaluate import Evaluate, EvaluationResult
    from .guardrails import GuardrailResult, guarded
    from .journal.redis import RedisJournal
    from .journal.run import durable
    from .journal.sqlite import Journal
    from .lm import LM, FallbackLM
    from .lm.redis_cache import RedisCache
    from .lm.redis_limits import RedisLimits
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
    from .retrievers import KNN
    from .sessions import chat
    from .stream_names import StatusMessageProvider, StreamListener
else:

    def __getattr__(name: str) -> Any:
        try:
            module, attribute = _LAZY[name]
        except KeyError:
            from .aliases import DSPY_ONLY_NAMES

            if name in DSPY_ONLY_NAMES:
                raise AttributeError(
                    f"td.{name} is DSPy's, not provided here: {DSPY_ONLY_NAMES[name]}"
                ) from None
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        import importlib

        value = importlib.import_module(module, __name__)
        if attribute is not None:
            value = getattr(value, attribute)
        globals()[name] = value
        return value


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
