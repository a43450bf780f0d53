"""The text policy: lone surrogates become U+FFFD wherever text enters.

A Python ``str`` may hold a lone surrogate (``"\\ud800"``): JSON's ``\\ud800``
escape decodes to one, and so can a file, a tool or a user's input. Such a
string cannot be encoded as UTF-8, so it would fail much later and far from
its cause (the next request body, a cache key, a span written to a file) with
a bare ``UnicodeEncodeError``. The library therefore replaces each lone
surrogate with U+FFFD (the replacement character, as a UTF-8 decoder does for
invalid bytes) at the boundaries where text comes in: server responses and
streams, user inputs, tool results and loaded files. A well-formed pair
written as two code points is joined into the one character it stands for.

Clean text is returned as it is (the same object), so the check costs one
``encode`` on text that is not pure ASCII, and nothing on text that is.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["clean_json", "clean_text", "has_surrogate_escape", "utf8"]

# A JSON escape of a surrogate (``\ud800`` to ``\udfff``, any case): the only
# way a lone surrogate can enter through JSON bytes, which are UTF-8 text.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def clean_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (``text`` itself if it has none)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # UTF-16 with surrogatepass joins well-formed pairs and keeps lone
        # halves as unpaired code units, which the decoder then replaces.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def utf8(text: str) -> bytes:
    """``text`` encoded as UTF-8, each lone surrogate written as U+FFFD.

    The last guard where text leaves as bytes (a request body, a file): text
    that was cleaned where it entered costs one ``encode`` here, as before.
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return clean_text(text).encode("utf-8")


def clean_json(value: Any) -> Any:
    """``value`` (decoded JSON, or any nest of dicts, lists and tuples) with every
    string, keys included, passed through :func:`clean_text`.

    Containers that hold no lone surrogate are returned as they are. The walk
    uses an explicit stack, so any depth is safe.
    """
    if isinstance(value, str):
        return clean_text(value)
    if not isinstance(value, (dict, list, tuple)):
        return value
    return _clean_container(value)


def _clean_container(root: Any) -> Any:
    # Post-order over an explicit stack: each container is rebuilt only if one
    # of its members changed, so clean input costs one pass and no copies.
    # A container met again while it is being walked (a cycle, possible in
    # user values though never in decoded JSON) is kept as it is.
    done: dict[int, Any] = {}
    seen: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if not expanded:
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            members = node.values() if isinstance(node, dict) else node
            for member in members:
                if isinstance(member, (dict, list, tuple)) and id(member) not in seen:
                    stack.append((member, False))
            continue
        done[id(node)] = _rebuilt(node, done)
    return done[id(root)]


def _rebuilt(node: Any, done: dict[int, Any]) -> Any:
    def member(value: Any) -> Any:
        if isinstance(value, str):
            return clean_text(value)
        if isinstance(value, (dict, list, tuple)):
            return done.get(id(value), value)
        return value

    if isinstance(node, dict):
        items = [(member(k), member(v)) for k, v in node.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, node.items(), strict=True)):
            return node
        return dict(items)
    values = [member(v) for v in node]
    if all(v is v0 for v, v0 in zip(values, node, strict=True)):
        return node
    return type(node)(values)


def has_surrogate_escape(content: bytes) -> bool:
    """Whether JSON ``content`` may decode to a string holding a surrogate.

    A fast check on the raw bytes (no decoding): false means no string in the
    decoded document can hold one, so :func:`clean_json` can be skipped,
    provided the bytes are decoded as strict UTF-8 (``json.loads`` of bytes
    uses ``surrogatepass``, so ``b"\xed\xa0\x80"`` would slip through it).
    """
    return _SURROGATE_ESCAPE.search(content) is not None
