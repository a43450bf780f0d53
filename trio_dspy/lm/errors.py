"""What a failed HTTP reply from a model server means, as a typed error.

:func:`error_for_reply` reads the provider's error body (its message, error
code and the request parameter it blames) and maps the status to an
:class:`~trio_dspy.errors.LMError` subclass. :func:`is_retryable_status` says
which statuses are worth another attempt, and :func:`refuses_format` whether
the server refused the requested ``response_format`` (the client then steps
down to a weaker format instead of failing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ..errors import (
    ContextWindowExceededError,
    LMAuthError,
    LMBadRequestError,
    LMError,
    LMRateLimitError,
    LMResponseTooLargeError,
    LMServerError,
    LMTimeoutError,
    ToolsUnsupportedError,
)
from ..http.client import Reply, ResponseTooLargeFailure, TransportFailure
from ..http.headers import parse_retry_after
from .params import loads

__all__ = [
    "ErrorBody",
    "FormatRefused",
    "after_retries",
    "error_for_failure",
    "error_for_reply",
    "error_for_status",
    "is_retryable_status",
    "parse_retry_after",
    "read_error_body",
    "refuses_format",
]

_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "context length",
    "context_length",
    "context window",
    "context size",
    "prompt is too long",
    "input is too long",
    "too many tokens",
    "maximum number of tokens",
)

# Request parameters whose rejection means "this server takes no tools".
_TOOL_PARAMS = frozenset({"tools", "tool_choice"})
_FORMAT_PARAM = "response_format"
# Gemini names the schema it refuses ``generation_config.response_schema``.
_FORMAT_MARKERS = (_FORMAT_PARAM, "json_schema", "response_schema")
# How servers that blame no parameter say they take no tools: Ollama (400,
# "<model> does not support tools"), vLLM without auto tool choice (400,
# '"auto" tool choice requires --enable-auto-tool-choice ...'), llama.cpp's
# server without --jinja (500, "tools param requires --jinja flag"), Gemini
# refusing a keyword of the tool definitions (400, 'Unknown name
# "additionalProperties" at 'tools[0].function_declarations[0]...').
_TOOL_REFUSALS = (
    "does not support tools",
    "tool choice requires",
    "tools param requires",
    "at 'tools[",
)


@attrs.frozen
class ErrorBody:
    """What a provider's error body says.

    ``code`` is the provider's error code (OpenAI's ``error.code``, else the
    error ``type``, which is all Anthropic sends); ``param`` the request
    parameter it blames (OpenAI's ``error.param``). Both are ``None`` when
    the body does not name them.
    """

    message: str
    code: str | None = None
    param: str | None = None


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def read_error_body(data: Any, fallback: str) -> ErrorBody:
    """The message, code and blamed parameter in a decoded error body.

    Understands OpenAI (``{"error": {"message", "type", "param", "code"}}``),
    Anthropic (``{"type": "error", "error": {"type", "message"}}``) and the
    shapes of common OpenAI-compatible servers (``{"error": "..."}``,
    ``{"message": ...}``, ``{"detail": ...}``), and Gemini's list of one
    error (``[{"error": {"code", "message", "status"}}]``). ``fallback`` (the
    raw body) is the message when the body has none. Raises nothing.
    """
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if isinstance(data, Mapping):
        err = data.get("error")
        if isinstance(err, Mapping):
            code = _text(err.get("code")) or _text(err.get("type")) or _text(err.get("status"))
            return ErrorBody(str(err.get("message") or fallback), code, _text(err.get("param")))
        code = _text(data.get("code")) or _text(data.get("type"))
        if isinstance(err, str) and err:
            return ErrorBody(err, code, _text(data.get("param")))
        for key in ("message", "detail"):
            if data.get(key):
                return ErrorBody(str(data[key]), code, _text(data.get("param")))
    return ErrorBody(fallback)


def is_retryable_status(status: int) -> bool:
    """408, 409, 429 and 5xx are worth retrying; other failures are final."""
    return status in (408, 409, 429) or status >= 500


def after_retries(retries: int) -> str:
    """`` after 2 retries`` for an error message (empty when none were spent)."""
    return f" after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""


def _is_context_error(body: ErrorBody) -> bool:
    text = f"{body.code or ''} {body.message}".lower()
    return any(marker in text for marker in _CONTEXT_MARKERS)


def _refuses_tools(body: ErrorBody) -> bool:
    if body.param is not None or body.code in _TOOL_PARAMS:
        return body.param in _TOOL_PARAMS or body.code in _TOOL_PARAMS
    text = body.message[:2000].lower()
    return any(marker in text for marker in _TOOL_REFUSALS)


def error_for_status(
    status: int,
    body: ErrorBody,
    *,
    sent_tools: bool = False,
    retry_after: float | None = None,
    retries: int = 0,
    provider: str = "",
    model: str = "",
    auth_hint: str = "check the API key",
) -> LMError:
    """The typed error for a failed HTTP ``status``, carrying the provider's
    message, code and blamed parameter from ``body``.

    A 400/422/500 on a request that carried tools is a
    :class:`~trio_dspy.errors.ToolsUnsupportedError` when it blames ``tools``
    or ``tool_choice`` (by its ``param`` or ``code``) or, naming no
    parameter, says in the words of Ollama, vLLM, llama.cpp's server or
    Gemini that the server takes no tools, or not these tool definitions. ``retries`` is how many
    retries were spent (mentioned for transient errors), ``retry_after`` the
    pause the server asked for (kept on rate-limit errors). Raises nothing.
    """
    kw: dict[str, Any] = {
        "status_code": status,
        "provider": provider,
        "model": model,
        "code": body.code,
        "param": body.param,
    }
    message = body.message
    after = after_retries(retries)
    if status in (401, 403):
        return LMAuthError(f"{message} ({auth_hint})", **kw)
    if status == 429:
        return LMRateLimitError(
            f"{message} (still rate limited{after}: lower max_concurrency or set rpm=/tpm= "
            "on the LM, or raise max_retries)",
            retry_after=retry_after,
            **kw,
        )
    if status == 408:
        return LMTimeoutError(f"{message} (the server timed out{after})", **kw)
    # Before the 5xx case: llama.cpp's server refuses tools with a 500, which
    # no retry changes.
    if status in (400, 422, 500) and sent_tools and _refuses_tools(body):
        return ToolsUnsupportedError(
            f"{message} (the server takes no tool definitions)",
            **kw,
        )
    if status >= 500 or status == 409:
        return LMServerError(f"{message} (the server kept failing{after}; try again later)", **kw)
    if status in (400, 413, 422) and _is_context_error(body):
        return ContextWindowExceededError(
            f"{message} (shorten the prompt: fewer demos or smaller inputs, or use a model "
            "with a larger context window)",
            **kw,
        )
    if status == 404:
        return LMBadRequestError(f"{message} (check the model name and base_url)", **kw)
    return LMBadRequestError(message, **kw)


def error_for_reply(
    reply: Reply,
    *,
    sent_tools: bool = False,
    retries: int = 0,
    provider: str = "",
    model: str = "",
    auth_hint: str = "check the API key",
    scrub: Callable[[str], str] = str,
) -> LMError:
    """The typed error for a failed ``reply`` (see :func:`error_for_status`).

    The body is read as JSON when it is JSON, else taken as the message;
    ``scrub`` cleans the message (of the API key, which some servers echo).
    Raises nothing.
    """
    if 300 <= reply.status < 400:
        location = scrub(reply.headers.get("location", "")) or "an address it did not give"
        return LMBadRequestError(
            f"the server answered with a redirect to {location}; redirects are not followed "
            "(the API key must not travel to another address): if the new address is right, "
            "set base_url to it",
            status_code=reply.status,
            provider=provider,
            model=model,
        )
    try:
        data = loads(reply.content)  # lone surrogates in the message become U+FFFD
    except ValueError:  # not JSON, or nested too deeply to decode
        data = None
    raw = reply.head(2000).strip() or f"HTTP {reply.status} with an empty body"
    body = read_error_body(data, raw)
    retryable = is_retryable_status(reply.status)
    return error_for_status(
        reply.status,
        attrs.evolve(body, message=scrub(body.message)),
        sent_tools=sent_tools,
        retry_after=parse_retry_after(reply.headers) if retryable else None,
        retries=retries,
        provider=provider,
        model=model,
        auth_hint=auth_hint,
    )


class FormatRefused(Exception):
    """The server refused the requested ``response_format`` (step down a level)."""

    def __init__(self, error: LMError) -> None:
        self.error = error
        super().__init__(str(error))


def refuses_format(error: LMError, body_text: str) -> bool:
    """Whether ``error`` says the server does not take the ``response_format`` sent.

    The parameter the server blames decides when it names one. Without one
    the body text does: llama.cpp-style servers answer an unsupported
    ``json_schema`` with a 500 that names no parameter, so the only sign is
    the body mentioning ``response_format`` or ``json_schema`` (in whichever
    field the server puts its text). Raises nothing.
    """
    if error.status_code not in (400, 422, 500):
        return False
    if error.param is not None:
        return error.param.split(".")[0].split("[")[0] == _FORMAT_PARAM
    text = body_text[:2000].lower()
    return any(marker in text for marker in _FORMAT_MARKERS)


def error_for_failure(
    failure: TransportFailure,
    *,
    where: str,
    retries: int = 0,
    provider: str = "",
    model: str = "",
    scrub: Callable[[str], str] = str,
) -> tuple[LMError, BaseException | None]:
    """The typed error for a request that got no usable response from ``where``.

    Returns the error and the exception to chain it to: a copy of ``failure``
    whose text ``scrub`` cleaned (of the key), or ``None`` when chaining adds
    nothing. The error is final when ``failure.retryable`` is false (an
    untrusted certificate, a response over ``max_response_bytes``). Raises nothing.
    """
    if isinstance(failure, ResponseTooLargeFailure):
        error: LMError = LMResponseTooLargeError(
            f"the response from {where} is larger than max_response_bytes={failure.limit} "
            "(as received or decompressed); raise max_response_bytes= on the LM if that "
            "is expected",
            limit=failure.limit,
            provider=provider,
            model=model,
        )
        return error, None
    exc = TransportFailure(
        scrub(str(failure)), timeout=failure.timeout, retryable=failure.retryable
    )
    exc.__cause__ = failure.__cause__
    if exc.timeout:
        error = LMTimeoutError(
            f"{where} timed out ({exc}){after_retries(retries)}", provider=provider, model=model
        )
    elif not exc.retryable:
        error = LMServerError(
            f"cannot open a trusted connection to {where} ({exc}): check base_url, "
            "or point SSL_CERT_FILE at the certificate authority the server uses",
            provider=provider,
            model=model,
        )
    else:
        error = LMServerError(
            f"could not get a response from {where} ({exc}){after_retries(retries)}: "
            "check that the server is running and base_url is right",
            provider=provider,
            model=model,
        )
    return error, exc
