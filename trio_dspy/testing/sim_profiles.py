"""How real OpenAI-compatible servers differ, for the simulated server to play.

``SimConfig(profile="ollama")`` (or ``trio-dspy serve-sim --profile ollama``)
makes the simulated server answer ``/v1/chat/completions`` the way that
server does where it differs from OpenAI: which ``response_format`` types it
takes and how it refuses the others (status and error body), whether it
takes tool definitions, which request fields it rejects, what its usage
looks like (and whether a stream carries it), and the shape of its error
bodies. Each :class:`SimProfile` is a frozen value; :data:`PROFILES` holds
one per server, and ``attrs.evolve(PROFILES["vllm"], usage=False)`` makes a
variant.

What each profile reproduces, and where it was read, is in the README
section "OpenAI-compatible servers". The profiles describe the servers as
commonly deployed: an Ollama model without tool support, vLLM without
``--enable-auto-tool-choice``, llama.cpp's server without ``--jinja``, a
Groq model without ``json_schema`` support.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from .http_server import Response

__all__ = ["PROFILES", "ErrorShape", "SimProfile", "StreamUsage", "get_profile"]

#: How a server's error bodies look.
#: ``openai``: ``{"error": {"message", "type", "param", "code"}}``;
#: ``llamacpp``: ``{"error": {"code": 400, "message", "type"}}``;
#: ``vllm``: ``{"object": "error", "message", "type", "param", "code": 400}``;
#: ``string``: ``{"error": "message"}``;
#: ``gemini``: ``[{"error": {"code": 400, "message", "status"}}]`` (a list).
ErrorShape = Literal["openai", "llamacpp", "vllm", "string", "gemini"]
#: When a stream ends with a usage chunk: when ``stream_options.include_usage``
#: asks for it, always, or never.
StreamUsage = Literal["asked", "always", "never"]

_STATUS_NAMES = {400: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}


@attrs.frozen
class SimProfile:
    """What one server does differently from OpenAI's Chat Completions.

    Attributes:
        name: the profile's name (``"ollama"``).
        json_schema: takes ``response_format`` of type ``json_schema``.
        json_object: takes ``response_format`` of type ``json_object``.
        format_refusal: the message refusing a ``response_format`` type
            (``{kind}`` is replaced by the type); sent with ``format_status``.
        format_status: the status of that refusal.
        format_keys: the keys a ``response_format`` may have (others are
            refused, as a strict proto-based parser does); ``None``: any.
        schema_refused: JSON-schema keywords refused inside a ``json_schema``
            schema or a tool's parameters (named in the error).
        tools: takes tool definitions. When false, a request with ``tools``
            (and a ``tool_choice`` in ``tools_refused_for``) gets
            ``tool_refusal`` (``{model}`` is replaced) with ``tools_status``.
        tools_refused_for: the ``tool_choice`` values refused when ``tools``
            is false (``None`` stands for an absent ``tool_choice``, ``"named"``
            for a named tool); by default every one.
        fields: the request fields the server knows; others get a 400
            naming them. ``None``: any field.
        unsupported: request fields always refused (Groq's ``logprobs``).
        max_n: the largest ``n`` taken (``None``: no limit).
        json_word: ``json_object`` needs the word "json" in the messages.
        error_shape: see :data:`ErrorShape`.
        usage: the response carries ``usage`` at all.
        stream_usage: see :data:`StreamUsage`.
        reasoning_tokens: hidden reasoning tokens spent before the answer:
            they count against ``max_tokens`` (a small one leaves an empty
            answer with ``finish_reason`` "length") and only into
            ``total_tokens``.
        usage_extra: fields added to ``usage`` (Groq's timings).
        extra: top-level fields added to a response (llama.cpp's ``timings``).
        headers: headers added to a whole (not streamed) answer (a LiteLLM
            proxy's ``x-litellm-response-cost``).
    """

    name: str
    json_schema: bool = True
    json_object: bool = True
    format_refusal: str = "response_format type `{kind}` is not supported"
    format_status: int = 400
    format_keys: tuple[str, ...] | None = None
    schema_refused: tuple[str, ...] = ()
    tools: bool = True
    tool_refusal: str = "tools are not supported"
    tools_status: int = 400
    tools_refused_for: tuple[str | None, ...] = (None, "auto", "required", "none", "named")
    fields: frozenset[str] | None = None
    unsupported: tuple[str, ...] = ()
    max_n: int | None = None
    json_word: bool = False
    error_shape: ErrorShape = "openai"
    usage: bool = True
    stream_usage: StreamUsage = "asked"
    reasoning_tokens: int = 0
    usage_extra: Mapping[str, Any] = attrs.field(factory=dict)
    extra: Mapping[str, Any] = attrs.field(factory=dict)
    headers: Mapping[str, str] = attrs.field(factory=dict)

    # ------------------------------------------------------------ refusals
    def refusal(self, body: Mapping[str, Any]) -> Response | None:
        """The error this server answers ``body`` with, or ``None`` when it takes it."""
        for check in (self._fields, self._params, self._tools, self._format):
            refused = check(body)
            if refused is not None:
                return refused
        return None

    def _fields(self, body: Mapping[str, Any]) -> Response | None:
        if self.fields is None:
            return None
        unknown = [key for key in body if key not in self.fields]
        if not unknown:
            return None
        return self.error(400, _unknown_names([(name, None) for name in unknown]))

    def _params(self, body: Mapping[str, Any]) -> Response | None:
        for key in self.unsupported:
            if body.get(key) not in (None, False):
                return self.error(400, f"property '{key}' is unsupported")
        n = body.get("n")
        if self.max_n is not None and isinstance(n, int) and n > self.max_n:
            return self.error(400, f"'n' : number must be at most {self.max_n}", param="n")
        return None

    def _tools(self, body: Mapping[str, Any]) -> Response | None:
        tools = body.get("tools")
        if not tools:
            return None
        choice = body.get("tool_choice")
        # A named tool (an object) is "named"; an absent tool_choice is None.
        key = choice if choice is None or isinstance(choice, str) else "named"
        if not self.tools and key in self.tools_refused_for:
            model = str(body.get("model") or "")
            return self.error(self.tools_status, self.tool_refusal.format(model=model))
        where = []
        for i, tool in enumerate(tools if isinstance(tools, list) else ()):
            function = tool.get("function") if isinstance(tool, dict) else None
            params = function.get("parameters") if isinstance(function, dict) else None
            where += [
                (word, f"tools[0].function_declarations[{i}].parameters{path}")
                for word, path in _keywords(params, self.schema_refused)
            ]
        return self.error(400, _unknown_names(where)) if where else None

    def _format(self, body: Mapping[str, Any]) -> Response | None:
        fmt = body.get("response_format")
        if not isinstance(fmt, Mapping):
            return None
        kind = fmt.get("type")
        refused = {"json_schema": not self.json_schema, "json_object": not self.json_object}
        if refused.get(str(kind)):
            message = self.format_refusal.format(kind=kind)
            return self.error(self.format_status, message, param="response_format")
        if self.format_keys is not None:
            unknown = [(k, "response_format") for k in fmt if k not in self.format_keys]
            if unknown:
                return self.error(400, _unknown_names(unknown))
        if kind == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema")
            where = [
                (word, f"generation_config.response_schema{path}")
                for word, path in _keywords(schema, self.schema_refused)
            ]
            if where:
                return self.error(400, _unknown_names(where))
        if kind == "json_object" and self.json_word and "json" not in _text(body).lower():
            message = (
                "'messages' must contain the word 'json' in some form, "
                "to use 'response_format' of type 'json_object'."
            )
            return self.error(400, message)
        return None

    def error(self, status: int, message: str, *, param: str | None = None) -> Response:
        """An error response in this server's :data:`ErrorShape`."""
        kind = "invalid_request_error" if status < 500 else "server_error"
        data: Any
        if self.error_shape == "string":
            data = {"error": message}
        elif self.error_shape == "vllm":
            data = {
                "object": "error",
                "message": message,
                "type": "BadRequestError" if status < 500 else "InternalServerError",
                "param": None,
                "code": status,
            }
        elif self.error_shape == "llamacpp":
            data = {"error": {"code": status, "message": message, "type": kind}}
        elif self.error_shape == "gemini":
            status_name = _STATUS_NAMES.get(status, "UNKNOWN")
            data = [{"error": {"code": status, "message": message, "status": status_name}}]
        else:
            data = {"error": {"message": message, "type": kind, "param": param, "code": None}}
        return Response.from_json(data, status=status)

    # ------------------------------------------------------------ responses
    def shape(self, payload: dict[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
        """``payload`` (a ``chat.completion``) as this server would send it."""
        payload = {**payload, **self.extra}
        usage = payload.get("usage")
        if not self.usage:
            payload.pop("usage", None)
        elif isinstance(usage, Mapping):
            usage = {**usage, **self.usage_extra}
            if self.reasoning_tokens:
                usage["total_tokens"] = int(usage["total_tokens"]) + self.reasoning_tokens
                payload["choices"] = [self._think(c, body) for c in payload["choices"]]
            payload["usage"] = usage
        return payload

    def _think(self, choice: dict[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
        """The answer after hidden reasoning spent part of ``max_tokens``."""
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        message = choice.get("message") or {}
        text = message.get("content") or ""
        if not isinstance(limit, int) or message.get("tool_calls"):
            return choice
        room = max(0, limit - self.reasoning_tokens) * 4
        if len(text) <= room:
            return choice
        return {**choice, "message": {**message, "content": text[:room]}, "finish_reason": "length"}

    def stream_usage_for(self, body: Mapping[str, Any], payload: Mapping[str, Any]) -> bool:
        """Whether a stream of ``payload`` for ``body`` ends with a usage chunk."""
        if "usage" not in payload or self.stream_usage == "never":
            return False
        if self.stream_usage == "always":
            return True
        options = body.get("stream_options")
        return isinstance(options, Mapping) and bool(options.get("include_usage"))


def _unknown_names(where: Sequence[tuple[str, str | None]]) -> str:
    """Gemini's (proto parser's) words for fields it does not know."""
    return "\n".join(
        f'Invalid JSON payload received. Unknown name "{name}"'
        + (f" at '{path}'" if path else "")
        + ": Cannot find field."
        for name, path in where
    )


def _keywords(schema: Any, words: tuple[str, ...], path: str = "") -> list[tuple[str, str]]:
    """Each of ``words`` used as a key in ``schema`` (nested), with where."""
    found: list[tuple[str, str]] = []
    if not words:
        return found
    if isinstance(schema, Mapping):
        found += [(word, path) for word in words if word in schema]
        for key, value in schema.items():
            if key == "properties" and isinstance(value, Mapping):
                for i, sub in enumerate(value.values()):
                    found += _keywords(sub, words, f"{path}.properties[{i}].value")
            elif key in ("items", "anyOf", "$defs", "definitions"):
                found += _keywords(value, words, f"{path}.{key}")
    elif isinstance(schema, list):
        for i, sub in enumerate(schema):
            found += _keywords(sub, words, f"{path}[{i}]")
    return found


def _text(body: Mapping[str, Any]) -> str:
    """The text of every message of a request."""
    parts: list[str] = []
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [str(p.get("text", "")) for p in content if isinstance(p, Mapping)]
    return "\n".join(parts)


# The fields Gemini's OpenAI-compatible endpoint parses (others are refused).
_GEMINI_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "seed",
        "stream",
        "stream_options",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "top_logprobs",
        "reasoning_effort",
        "extra_body",
    }
)

#: One profile per server, by name.
PROFILES: Mapping[str, SimProfile] = {
    p.name: p
    for p in (
        SimProfile(
            "ollama",
            tools=False,
            tool_refusal="registry.ollama.ai/library/{model} does not support tools",
            error_shape="openai",
        ),
        SimProfile(
            "lmstudio",
            json_object=False,
            format_refusal="'response_format.type' must be 'json_schema' or 'text'",
            error_shape="string",
            stream_usage="never",
        ),
        SimProfile(
            "vllm",
            tools=False,
            tool_refusal=(
                '"auto" tool choice requires --enable-auto-tool-choice and '
                "--tool-call-parser to be set"
            ),
            tools_refused_for=(None, "auto"),
            error_shape="vllm",
        ),
        SimProfile(
            "llamacpp",
            tools=False,
            tool_refusal="tools param requires --jinja flag",
            tools_status=500,
            error_shape="llamacpp",
            stream_usage="always",
            extra={"timings": {"prompt_n": 0, "predicted_n": 0, "predicted_per_second": 0.0}},
        ),
        SimProfile(
            "groq",
            json_schema=False,
            format_refusal=(
                "This model does not support response format `json_schema`. See supported "
                "models at https://console.groq.com/docs/structured-outputs#supported-models"
            ),
            unsupported=("logprobs", "logit_bias", "top_logprobs"),
            max_n=1,
            json_word=True,
            usage_extra={"queue_time": 0.01, "prompt_time": 0.002, "completion_time": 0.02},
            extra={"x_groq": {"id": "req_sim"}},
        ),
        SimProfile(
            "gemini",
            format_keys=("type", "json_schema"),
            schema_refused=("$schema", "additionalProperties"),
            fields=_GEMINI_FIELDS,
            error_shape="gemini",
            reasoning_tokens=64,
        ),
    )
}


def get_profile(name: str | SimProfile | None) -> SimProfile | None:
    """The profile called ``name`` (a :class:`SimProfile` or ``None`` passes through).

    Raises:
        ValueError: no profile has that name.
    """
    if name is None or isinstance(name, SimProfile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown server profile {name!r}: use one of {', '.join(PROFILES)}"
        ) from None
