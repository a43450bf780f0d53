"""Language models: the interface, the HTTP clients and what they share.

``LM("openai/<model>")`` / ``LM("anthropic/<model>")`` build the provider's
client; :func:`inspect_history` prints recent calls. The values a call
exchanges (:class:`Message`, :class:`LMRequest`, ...) are defined in
:mod:`trio_dspy.messages` and re-exported here.
"""

from typing import TYPE_CHECKING, Any

from ..messages import (
    ContentPart,
    ImagePart,
    LMRequest,
    LMResponse,
    Message,
    ResponseFormat,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
)
from .base import BaseLM, HistoryEntry, LMStream
from .history import format_history, inspect_history

# The HTTP clients (httpx, h11, the transport, retries, limits, cache) load on
# first use: a program that only defines signatures and modules, or runs on
# DummyLM, does not pay for them. name -> submodule.
_LAZY = {
    "AnthropicLM": ".anthropic",
    "Cache": ".cache",
    "DiskCache": ".cache",
    "FallbackLM": ".fallback",
    "MemoryCache": ".cache",
    "LM": ".client",
    "known_providers": ".client",
    "register_provider": ".client",
    "Limits": ".limits",
    "OpenAILM": ".openai",
    "RedisCache": ".redis_cache",
    "RedisLimits": ".redis_limits",
    "Backoff": ".retry",
}

if TYPE_CHECKING:
    from .anthropic import AnthropicLM
    from .cache import Cache, DiskCache, MemoryCache
    from .client import LM, known_providers, register_provider
    from .fallback import FallbackLM
    from .limits import Limits
    from .openai import OpenAILM
    from .redis_cache import RedisCache
    from .redis_limits import RedisLimits
    from .retry import Backoff
else:

    def __getattr__(name: str) -> Any:
        try:
            module = _LAZY[name]
        except KeyError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        import importlib

        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value


__all__ = [
    "LM",
    "AnthropicLM",
    "Backoff",
    "BaseLM",
    "Cache",
    "ContentPart",
    "DiskCache",
    "FallbackLM",
    "HistoryEntry",
    "ImagePart",
    "LMRequest",
    "LMResponse",
    "LMStream",
    "Limits",
    "MemoryCache",
    "Message",
    "OpenAILM",
    "RedisCache",
    "RedisLimits",
    "ResponseFormat",
    "TextPart",
    "ToolCall",
    "ToolCallDelta",
    "ToolSpec",
    "format_history",
    "inspect_history",
    "known_providers",
    "register_provider",
]
