"""The provider registry: which class serves ``LM("provider/name")``.

The classes are subclasses of :class:`~trio_dspy.lm.LM`; this module names
them without importing that one (``lm/client.py`` imports this), so the
registry's types say only ``type``.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import ConfigurationError

__all__ = ["known_providers", "provider_class", "register_provider"]

# provider -> "module:Class", imported on first use.
_PROVIDERS: dict[str, str | type[Any]] = {
    "openai": "trio_dspy.lm.openai:OpenAILM",
    "anthropic": "trio_dspy.lm.anthropic:AnthropicLM",
    # OpenAI-compatible servers with a conventional address (lm/compatible.py).
    "ollama": "trio_dspy.lm.compatible:OllamaLM",
    "lmstudio": "trio_dspy.lm.compatible:LMStudioLM",
    "vllm": "trio_dspy.lm.compatible:VLLMLM",
    "llamacpp": "trio_dspy.lm.compatible:LlamaCppLM",
    "groq": "trio_dspy.lm.compatible:GroqLM",
    "gemini": "trio_dspy.lm.compatible:GeminiLM",
}


def register_provider(name: str, cls: type[Any] | str) -> None:
    """Make ``LM("name/model")`` build ``cls`` (an ``LM`` subclass or ``"module:Class"``)."""
    _PROVIDERS[name] = cls


def known_providers() -> list[str]:
    """The provider prefixes ``LM`` understands, sorted."""
    return sorted(_PROVIDERS)


def provider_class(model: str) -> type[Any]:
    """The class that serves ``model`` (``"provider/name"``), imported on first use.

    Raises:
        ConfigurationError: no known provider prefix.
    """
    provider, sep, name = model.partition("/")
    if not sep or not provider or not name:
        guess = _guessed_provider(model)
        example = f"{guess}/{model}" if guess else "openai/gpt-4o-mini"
        raise ConfigurationError(
            f"model {model!r} does not name a provider: write 'provider/name', for example "
            f"{example!r} (known providers: {', '.join(known_providers())})"
        )
    entry = _PROVIDERS.get(provider)
    if entry is None:
        raise ConfigurationError(
            f"unknown provider {provider!r} in model {model!r}: known providers are "
            f"{', '.join(known_providers())} (any OpenAI-compatible server is "
            "'openai/<model>' with base_url=...)"
        )
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
        _PROVIDERS[provider] = entry
    return entry


# Bare model names DSPy's LiteLLM maps to a provider by their prefix: named in
# the error, never guessed silently (a prefix says which server gets the key).
_BARE_PREFIXES = {
    "gpt-": "openai",
    "chatgpt-": "openai",
    "o1": "openai",
    "o3": "openai",
    "o4-": "openai",
    "claude-": "anthropic",
    "gemini-": "gemini",
}


def _guessed_provider(model: str) -> str | None:
    """The provider LiteLLM would take a bare ``model`` name for, if any."""
    return next((p for pre, p in _BARE_PREFIXES.items() if model.startswith(pre)), None)
