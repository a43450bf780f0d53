"""What ``LM(...)`` accepts besides its own options, and reading what a server sends back.

* :func:`check_params`: sampling parameters given to ``LM(...)`` by name must
  be ones a provider knows; a misspelt one (``temprature``) is refused with a
  suggestion instead of being sent and silently ignored. Anything else goes
  through ``extra_body={...}`` on purpose.
* :func:`api_key_from`: the key given or the one in the environment, refused
  (without echoing it) when it could not go into a header as it is.
* :func:`completion_estimate`: the completion tokens ``tpm`` reserves for a
  request before it is sent.
* :func:`load_json`: a response body decoded without blocking the event loop
  for long, with hostile nesting turned into a ``ValueError`` and lone
  surrogates into U+FFFD (the text policy of :mod:`trio_dspy.unicode`).
* :func:`clean_arguments`: a tool call's JSON arguments text with the lone
  surrogates it decodes to replaced the same way.
* :func:`token_count`: a usage count from a response, ``0`` when unreadable.
* :func:`read_index`, :func:`read_text`, :func:`optional_text`: a
  position, text or a name from a response, or :class:`BadField` naming
  the field.
* :data:`MALFORMED`: the exceptions reading a response of the wrong shape
  can raise, which the client turns into
  :class:`~trio_dspy.errors.LMServerError`.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import trio

from ..unicode import clean_json, clean_text, has_surrogate_escape

__all__ = [
    "COMPLETION_ESTIMATE",
    "MALFORMED",
    "MAX_INDEX",
    "MAX_TOKEN_COUNT",
    "SAMPLING_PARAMS",
    "BadField",
    "TooDeep",
    "api_key_from",
    "check_params",
    "check_positive",
    "clean_arguments",
    "completion_estimate",
    "decodes_here",
    "load_json",
    "loads",
    "optional_text",
    "read_index",
    "read_text",
    "refuse_unknown",
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
    unknown = [name for name in params if name not in SAMPLING_PARAMS]
    refuse_unknown(
        unknown,
        sorted(SAMPLING_PARAMS | set(options)),
        _RENAMED,
        owner="LM()",
        what="a parameter this library does not know",
    )


def refuse_unknown(
    names: Iterable[str],
    known: Sequence[str],
    renamed: Mapping[str, str],
    *,
    owner: str,
    what: str,
) -> None:
    """Refuse the first of ``names`` (keywords not taken), saying what to write instead:
    its name here (``renamed``), the closest of ``known``, or ``extra_body``.

    Raises:
        TypeError: there is such a name.
    """
    for name in names:
        if name in renamed:
            hint = f"; it is called {renamed[name]!r} here"
        else:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TypeError(
            f"{owner} got an unexpected keyword argument {name!r}{hint} "
            f"({what} goes to the server through extra_body={{{name!r}: ...}})"
        )


def check_positive(**values: float | None) -> None:
    """Refuse values that are set but not positive (timeouts in seconds, byte limits).

    Raises:
        ValueError: naming the first offending option.
    """
    for name, value in values.items():
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be a positive number or None, got {value!r}")


def api_key_from(api_key: str | None, env: str) -> str:
    """The key given, else the one in the environment variable ``env`` (``""``: none).

    Raises:
        ValueError: the key has whitespace around it, control or non-ASCII
            characters (it goes into an HTTP header); the message names where
            it came from and never shows the key.
    """
    key = api_key if api_key is not None else os.environ.get(env, "")
    if key != key.strip() or not key.isprintable() or not key.isascii():
        source = "api_key" if api_key is not None else env
        raise ValueError(
            f"{source} has whitespace, control or non-ASCII characters "
            "(a stray newline or space?): check how the key is loaded"
        )
    return key


def completion_estimate(body: Mapping[str, Any]) -> int:
    """The completion tokens to reserve for ``body``: its ``max_tokens`` (or
    ``max_completion_tokens``), else :data:`COMPLETION_ESTIMATE`."""
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return COMPLETION_ESTIMATE


#: The largest token count taken from a usage block: a hundred times the
#: largest context windows. A larger one is no count (a server's garbage),
#: and charged to ``tpm`` it would hold every later call back for years.
MAX_TOKEN_COUNT = 10**9

#: The largest position a tool call or content block may have in one
#: response: far beyond any real answer, small enough that nothing sized by
#: it (a list of calls in a reader's code) can exhaust memory.
MAX_INDEX = 10_000

#: What reading a decoded response of the wrong shape may raise: a missing
#: key or item, a value of the wrong type, a number ``int()`` cannot take
#: (``OverflowError`` is an ``ArithmeticError``, not a ``ValueError``), a
#: nest too deep to walk.
MALFORMED: tuple[type[Exception], ...] = (
    ValueError,
    LookupError,
    TypeError,
    AttributeError,
    ArithmeticError,
    RecursionError,
)


def token_count(value: Any) -> int:
    """A token count from a usage block: ``0`` (unknown) when missing, not a
    number, not finite, negative or above :data:`MAX_TOKEN_COUNT`. Raises nothing."""
    if type(value) is int:  # what servers send: no further checks to pay for
        return value if 0 <= value <= MAX_TOKEN_COUNT else 0
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return 0
    if isinstance(value, str) and not _short_digits(value):
        return 0  # a count sent as text; never hand int() thousands of digits
    try:
        count = int(value)
    except (ValueError, OverflowError):  # NaN, infinity
        return 0
    return count if 0 <= count <= MAX_TOKEN_COUNT else 0


def _short_digits(text: str) -> bool:
    """Whether ``text`` is a number written in fewer than 16 ASCII digits."""
    return text.isascii() and text.isdigit() and len(text) < 16


class BadField(ValueError):
    """A field of a server's response holds a value of the wrong kind.

    ``field`` names it (``tool_calls[].index``); the message shows the start
    of the value and what belongs there.
    """

    def __init__(self, field: str, value: Any, expected: str) -> None:
        self.field = field
        shown = _shown(value)
        super().__init__(f"the server sent {field}={shown} where {expected} belongs")


def _shown(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**40:
        return "a number of more than 40 digits"  # repr() of a huge int is slow, and long
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        text = f"a {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def read_index(value: Any, field: str) -> int:
    """``value`` as a position in a response: a whole number from 0 to :data:`MAX_INDEX`.

    An integral float (``1.0``) and a short string of digits are taken too,
    as some compatible servers send them.

    Raises:
        BadField: anything else (negative, too large, not finite, not a number).
    """
    number: Any = value
    integral = isinstance(value, float) and value.is_integer()  # false for NaN and infinities
    if integral or (isinstance(value, str) and _short_digits(value)):
        number = int(value)
    if isinstance(number, int) and not isinstance(number, bool) and 0 <= number <= MAX_INDEX:
        return number
    raise BadField(field, value, f"a whole number from 0 to {MAX_INDEX}")


class TooDeep(ValueError):
    """A JSON document nested too deeply to decode (a hostile body, not a garbled one)."""

    def __init__(self) -> None:
        super().__init__("the JSON is nested too deeply to decode")


def loads(content: bytes) -> Any:
    """``content`` decoded as JSON, on the calling thread, lone surrogates as U+FFFD.

    The bytes are decoded strictly first: ``json.loads`` given bytes decodes
    them with ``surrogatepass``, which would let a surrogate encoded as
    bytes (``ED A0 80``) through as text with no escape to betray it.

    Raises:
        TooDeep: nested too deeply (a ``ValueError``).
        ValueError: not JSON (invalid UTF-8 included).
    """
    return _decoded(content, None)


def _decoded(content: bytes, hook: Any) -> Any:
    # An object whose second byte is not NUL is UTF-8 (no BOM, not UTF-16/32):
    # what every server sends, told apart without json.detect_encoding's tests.
    utf_8 = content[:1] == b"{" and content[1:2] != b"\x00"
    text = content.decode("utf-8" if utf_8 else json.detect_encoding(content))
    try:
        value = json.loads(text, object_pairs_hook=hook)
    except RecursionError:
        raise TooDeep from None
    # One scan of the bytes; the walk runs only when a \\uD8xx-style escape
    # may have decoded to a lone surrogate.
    return clean_json(value) if has_surrogate_escape(content) else value


def decodes_here(content: bytes) -> bool:
    """Whether :func:`load_json` decodes ``content`` on the calling thread (it is
    small enough), so that :func:`loads` does the same. Raises nothing."""
    return len(content) <= _THREAD_THRESHOLD


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return dict(pairs)


def _loads_yielding(content: bytes) -> Any:
    # A Python hook per object lets the interpreter hand the GIL back to the
    # event loop's thread between objects; C json.loads alone never does.
    return _decoded(content, _pairs)


async def load_json(content: bytes) -> Any:
    """``content`` decoded as JSON; large bodies are decoded in a worker thread.

    Every lone surrogate a ``\\ud800``-style escape decodes to comes out as
    U+FFFD, so the text can be sent on (as UTF-8) later.

    Raises:
        TooDeep: nested too deeply (a ``ValueError``).
        ValueError: not JSON (invalid UTF-8 included).
    """
    if len(content) <= _THREAD_THRESHOLD:
        return loads(content)
    return await trio.to_thread.run_sync(_loads_yielding, content)


def clean_arguments(text: str) -> str:
    """A tool call's arguments (JSON text) with every lone surrogate, raw or
    written as a JSON escape, replaced by U+FFFD. Raises nothing.

    Arguments holding no such escape are returned as they are. Those that
    do, and are valid JSON, are written out again from their cleaned value;
    arguments that are not JSON are left for the tool call's own parse to
    refuse.
    """
    text = clean_text(text)
    if "\\u" not in text or not has_surrogate_escape(text.encode()):
        return text
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return text
    cleaned = clean_json(value)
    if cleaned is value:  # only well-formed pairs (an emoji written as escapes)
        return text
    try:
        return json.dumps(cleaned, ensure_ascii=False)
    except (ValueError, RecursionError):  # writing may nest deeper than reading did
        return text


def read_text(value: Any, field: str, *, null: bool = True) -> str:
    """``value`` as text: a string, or ``""`` for ``null`` (when ``null`` is true).

    Raises:
        BadField: anything else (a number, a list, an object).
    """
    if isinstance(value, str):
        return value
    if value is None and null:
        return ""
    raise BadField(field, value, "a string")


def optional_text(value: Any) -> str | None:
    """``value`` when it is a non-empty string, else ``None`` (for metadata such as
    a finish reason, where a server's odd value is no reason to lose the answer)."""
    return value if isinstance(value, str) and value else None
