"""Named OpenAI-compatible servers: ``LM("ollama/llama3")`` and friends.

Each alias is :class:`~trio_dspy.lm.openai.OpenAILM` with the server's
conventional base URL, the environment variables of its URL and key, the
response-format levels it takes and its name as the ``provider`` (so spans
and logs say ``ollama``, not ``openai``). ``base_url=`` and ``api_key=`` still
win over everything, then the environment variables, then the defaults (a
local server needs no key: none is sent when its variable is unset):

| alias | default base URL (``$<ALIAS>_BASE_URL`` overrides) | key from |
| --- | --- | --- |
| ollama | ``http://localhost:11434/v1`` | ``OLLAMA_API_KEY`` |
| lmstudio | ``http://localhost:1234/v1`` | ``LMSTUDIO_API_KEY`` |
| vllm | ``http://localhost:8000/v1`` | ``VLLM_API_KEY`` |
| llamacpp | ``http://localhost:8080/v1`` | ``LLAMA_API_KEY`` |
| groq | ``https://api.groq.com/openai/v1`` | ``GROQ_API_KEY`` |
| gemini | ``https://generativelanguage.googleapis.com/v1beta/openai/`` | ``GEMINI_API_KEY`` |

The generic ``openai/<model>`` with ``base_url=`` reaches the same servers and
copes with them too (refused response formats are stepped down, refused
tools fall back to text in ``ReAct``); an alias only starts from what the
server is known to take.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ..messages import LMRequest
from .openai import OpenAILM

__all__ = ["VLLMLM", "GeminiLM", "GroqLM", "LMStudioLM", "LlamaCppLM", "OllamaLM"]


class OllamaLM(OpenAILM):
    """Ollama's OpenAI-compatible endpoint (``LM("ollama/llama3.1")``).

    Takes ``json_schema`` and ``json_object``; tools only with models whose
    template declares them (others answer 400 "does not support tools", and
    ``ReAct`` falls back to text). ``tool_choice`` is accepted but not enforced.
    """

    provider = "ollama"
    default_base_url = "http://localhost:11434/v1"
    base_url_env = "OLLAMA_BASE_URL"
    api_key_env = "OLLAMA_API_KEY"


class LMStudioLM(OpenAILM):
    """LM Studio's local server (``LM("lmstudio/qwen2.5-7b-instruct")``).

    Takes ``json_schema`` but refuses ``json_object`` (400 "'response_format.type'
    must be 'json_schema' or 'text'"), so that level is skipped.
    """

    provider = "lmstudio"
    format_levels: ClassVar[tuple[str, ...]] = ("json_schema", "prompt")
    default_base_url = "http://localhost:1234/v1"
    base_url_env = "LMSTUDIO_BASE_URL"
    api_key_env = "LMSTUDIO_API_KEY"


class VLLMLM(OpenAILM):
    """A vLLM server (``LM("vllm/Qwen/Qwen2.5-7B-Instruct")``).

    Takes ``json_schema`` and ``json_object`` (guided decoding). Tools need the
    server started with ``--enable-auto-tool-choice --tool-call-parser ...``;
    without them it answers 400, and ``ReAct`` falls back to text.
    """

    provider = "vllm"
    default_base_url = "http://localhost:8000/v1"
    base_url_env = "VLLM_BASE_URL"
    api_key_env = "VLLM_API_KEY"


class LlamaCppLM(OpenAILM):
    """llama.cpp's ``llama-server`` (``LM("llamacpp/qwen2.5")``).

    Takes ``json_schema`` and ``json_object`` with the schema inlined (both
    become a grammar). Tools need ``--jinja``; without it the server answers
    500 "tools param requires --jinja flag", which is not retried.
    """

    provider = "llamacpp"
    default_base_url = "http://localhost:8080/v1"
    base_url_env = "LLAMACPP_BASE_URL"
    api_key_env = "LLAMA_API_KEY"


class GroqLM(OpenAILM):
    """Groq's OpenAI-compatible API (``LM("groq/llama-3.3-70b-versatile")``).

    ``json_schema`` only on some models (others answer 400 "This model does
    not support response format `json_schema`" and the LM steps down to
    ``json_object``); ``logprobs``, ``logit_bias``, ``top_logprobs`` and ``n``
    above 1 are refused with 400, so ``Predict(..., n=3)`` makes three
    concurrent calls here. Key from ``$GROQ_API_KEY``.
    """

    provider = "groq"
    supports_n = False
    default_base_url = "https://api.groq.com/openai/v1"
    base_url_env = "GROQ_BASE_URL"
    api_key_env = "GROQ_API_KEY"


# Schema keywords Gemini's parser refuses ("Unknown name ...: Cannot find field").
_GEMINI_REFUSED = frozenset({"$schema", "additionalProperties"})


class GeminiLM(OpenAILM):
    """Gemini's OpenAI-compatible endpoint (``LM("gemini/gemini-2.5-flash")``).

    Gemini parses requests strictly: it refuses ``additionalProperties`` and
    ``$schema`` in a response schema or a tool's parameters, so this client
    leaves them out (through the generic ``openai/`` client, structured output
    would be stepped down to plain prompting and ``ReAct`` would fall back
    from native tools to text). Its errors come as a list of one
    error object. Thinking models spend hidden reasoning tokens out of
    ``max_tokens``: a small ``max_tokens`` can leave an empty answer cut off
    (``finish_reason`` "length"). Key from ``$GEMINI_API_KEY``.
    """

    provider = "gemini"
    default_base_url = "https://generativelanguage.googleapis.com/v1beta/openai/"
    base_url_env = "GEMINI_BASE_URL"
    api_key_env = "GEMINI_API_KEY"

    def build_body(self, request: LMRequest, level: str | None) -> dict[str, Any]:
        """The OpenAI body, with the schema keywords Gemini refuses left out."""
        body = super().build_body(request, level)
        fmt = body.get("response_format")
        if isinstance(fmt, dict) and "json_schema" in fmt:
            spec = fmt["json_schema"]
            fmt["json_schema"] = {**spec, "schema": _without_refused(spec.get("schema"))}
        elif isinstance(fmt, dict):  # Gemini's json_object takes no schema beside it
            fmt.pop("schema", None)
        for tool in body.get("tools", ()):
            function = tool["function"]
            function["parameters"] = _without_refused(function.get("parameters"))
        return body


def _without_refused(schema: Any) -> Any:
    """``schema`` (nested) without the keywords Gemini refuses."""
    if isinstance(schema, Mapping):
        return {
            # Under "properties" the keys are field names, kept whatever they are.
            k: _fields_without_refused(v) if k == "properties" else _without_refused(v)
            for k, v in schema.items()
            if k not in _GEMINI_REFUSED
        }
    if isinstance(schema, list):
        return [_without_refused(v) for v in schema]
    return schema


def _fields_without_refused(properties: Any) -> Any:
    if isinstance(properties, Mapping):
        return {name: _without_refused(v) for name, v in properties.items()}
    return _without_refused(properties)
