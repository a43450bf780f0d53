"""What ``LM(...)`` accepts besides its own options, and reading what a server sends back.

* :func:`check_params`: sampling parameters given to ``LM(...)`` by name must
  be ones a provider knows; a misspelt one (``temprature``) is refused with a
  suggestion instead of being sent and silently ignored. Anything else goes
  through ``extra_body={...}`` on purpose.
* :func:`completion_estimate`: the completion tokens ``tpm`` reserves for a
  request before it is sent.
* :func:`load_json`: a response body decoded without blocking the event loop
  for long, and with hostile nesting turned into a ``ValueError``.
* :func:`token_count`: a usage count from a response, ``0`` when unreadable.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import trio

__all__ = [
    "COMPLETION_ESTIMATE",
    "SAMPLING_PARAMS",
    "TooDeep",
    "check_params",
    "check_positive",
    "completion_estimate",
    "load_json",
    "token_count",
]

#: Request parameters ``LM(...)`` takes by name (beyond its explicit ones), as
#: OpenAI-compatible servers and Anthropic name them.
SAMPLING_PARAMS = frozenset(
    {
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "max_completion_tokens",
        "metadata",
        "n",
        "parallel_tool_calls",
        "presence_penalty",
        "reasoning_effort",
        "service_tier",
        "thinking",
        "top_k",
        "top_logprobs",
        "user",
    }
)

# DSPy's and LiteLLM's names for options that are spelt differently here.
_RENAMED = {
    "api_base": "base_url",
    "num_retries": "max_retries",
    "max_parallel_requests": "max_concurrency",
}

#: Completion tokens ``tpm`` reserves for a request that sets no ``max_tokens``.
COMPLETION_ESTIMATE = 1024

# Bodies larger than this are decoded in a worker thread (about 5 to 20 ms of
# json.loads per MiB on the event loop; see load_json).
_THREAD_THRESHOLD = 512 * 1024


def check_params(params: Mapping[str, Any], options: Iterable[str]) -> None:
    """Refuse names in ``params`` that are no known sampling parameter.

    ``options`` are the constructor's own keyword names (offered as suggestions).

    Raises:
        TypeError: an unknown name, with the closest known one when there is one.
    """
    known = sorted(SAMPLING_PARAMS | set(options))
    for name in params:
        if name in SAMPLING_PARAMS:
            continue
        if name in _RENAMED:
            hint = f"; it is called {_RENAMED[name]!r} here"
        else:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TypeError(
            f"LM() got an unexpected keyword argument {name!r}{hint} "
            "(a parameter this library does not know goes to the server through "
            f"extra_body={{{name!r}: ...}})"
        )


def check_positive(**values: float | None) -> None:
    """Refuse values that are set but not positive (timeouts in seconds, byte limits).

    Raises:
        ValueError: naming the first offending option.
    """
    for name, value in values.items():
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be a positive number or None, got {value!r}")


def completion_estimate(body: Mapping[str, Any]) -> int:
    """The completion tokens to reserve for ``body``: its ``max_tokens`` (or
    ``max_completion_tokens``), else :data:`COMPLETION_ESTIMATE`."""
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return COMPLETION_ESTIMATE


def token_count(value: Any) -> int:
    """A token count from a usage block: ``0`` (unknown) when missing or not a number."""
    if isinstance(value, bool):
        return 0
    try:
        count = int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0
    return max(count, 0)


class TooDeep(ValueError):
    """A JSON document nested too deeply to decode (a hostile body, not a garbled one)."""

    def __init__(self) -> None:
        super().__init__("the JSON is nested too deeply to decode")


def _loads(content: bytes) -> Any:
    try:
        return json.loads(content)
    except RecursionError:
        raise TooDeep from None


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return dict(pairs)


def _loads_yielding(content: bytes) -> Any:
    # A Python hook per object lets the interpreter hand the GIL back to the
    # event loop's thread between objects; C json.loads alone never does.
    try:
        return json.loads(content, object_pairs_hook=_pairs)
    except RecursionError:
        raise TooDeep from None


async def load_json(content: bytes) -> Any:
    """``content`` decoded as JSON; large bodies are decoded in a worker thread.

    Raises:
        TooDeep: nested too deeply (a ``ValueError``).
        ValueError: not JSON (invalid UTF-8 included).
    """
    if len(content) <= _THREAD_THRESHOLD:
        return _loads(content)
    return await trio.to_thread.run_sync(_loads_yielding, content)
