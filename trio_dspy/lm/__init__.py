"""Language models: the interface, the HTTP clients and what they share.

``LM("openai/<model>")`` / ``LM("anthropic/<model>")`` build the provider's
client; :func:`inspect_history` prints recent calls. The values a call
exchanges (:class:`Message`, :class:`LMRequest`, ...) are defined in
:mod:`trio_dspy.messages` and re-exported here.
"""

from ..messages import LMRequest, LMResponse, Message, ResponseFormat, ToolCall, ToolSpec
from .anthropic import AnthropicLM
from .base import BaseLM, HistoryEntry
from .cache import Cache, DiskCache, MemoryCache
from .client import LM, known_providers, register_provider
from .history import format_history, inspect_history
from .limits import Limits
from .openai import OpenAILM
from .retry import Backoff

__all__ = [
    "LM",
    "AnthropicLM",
    "Backoff",
    "BaseLM",
    "Cache",
    "DiskCache",
    "HistoryEntry",
    "LMRequest",
    "LMResponse",
    "Limits",
    "MemoryCache",
    "Message",
    "OpenAILM",
    "ResponseFormat",
    "ToolCall",
    "ToolSpec",
    "format_history",
    "inspect_history",
    "known_providers",
    "register_provider",
]
