"""Incremental field parsers: a completion's output fields, read as the text arrives.

An adapter's :meth:`~trio_dspy.adapters.base.Adapter.stream_parser` returns a
fresh :class:`FieldParser` for one completion. It is pure and synchronous:
:meth:`FieldParser.feed` takes the next text delta and returns the
``(field, chunk)`` pieces it completes; :meth:`FieldParser.finish` takes the
end of the completion and returns what was held back. Only the fields asked
for are reported, and for each of them the concatenated chunks equal the
value the adapter's ``parse`` gives a ``str`` field of the whole completion,
however the completion was split into deltas.

* :class:`ChatFieldParser` reads ``[[ ## field ## ]]`` sections. A marker
  never leaks into a chunk: text that might still become a marker (a ``[``
  and what follows it) is held back until it cannot, and whitespace at either
  end of a section is dropped, as the adapter strips it.
* :class:`JSONFieldParser` reads the string values of the top-level JSON
  object, escapes (``\\uXXXX`` and surrogate pairs included) decoded even
  when they arrive split; nested values are skipped.
* :class:`XMLFieldParser` reads ``<field>...</field>`` elements
  (:class:`~trio_dspy.adapters.xml_tags.TagScanner`), entities decoded; a
  possible tag or entity split across deltas is held back until it is whole,
  and whitespace at either end of a value is dropped, as the adapter strips it.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Protocol

from .markers import HEADER_PATTERN
from .xml_tags import TagScanner, decode_entities, entity_hold

__all__ = [
    "ChatFieldParser",
    "FieldParser",
    "JSONFieldParser",
    "NullFieldParser",
    "Piece",
    "XMLFieldParser",
]

Piece = tuple[str, str]
"""``(field, chunk)``: a non-empty piece of one field's value."""


class FieldParser(Protocol):
    """Reads one completion's fields incrementally (see the module docstring)."""

    def feed(self, delta: str) -> list[Piece]:
        """The pieces ``delta`` completes, in order."""

    def finish(self) -> list[Piece]:
        """The pieces held back until the end of the completion."""


class NullFieldParser:
    """A parser that reports nothing (adapters without an incremental reading)."""

    def feed(self, delta: str) -> list[Piece]:
        """Nothing."""
        return []

    def finish(self) -> list[Piece]:
        """Nothing."""
        return []


# A prefix of a field marker (HEADER_PATTERN) reaching the end of the text:
# the text from a "[" that could still become "[[ ## name ## ]]".
_MARKER_PREFIX = re.compile(r"\[(?:\[\s*(?:#(?:#\s*(?:[A-Za-z_]\w*\s*(?:#(?:#\s*\]?)?)?)?)?)?)?\Z")
_COMPLETED = "completed"


def _marker_start(text: str) -> int:
    """Where a possible marker prefix at the end of ``text`` starts (``len(text)``: none)."""
    start = text.find("[")
    while start != -1:
        if _MARKER_PREFIX.match(text, start):
            return start
        start = text.find("[", start + 1)
    return len(text)


class _Stripped:
    """One field's text reported as it grows, stripped as the adapters strip it:
    leading whitespace dropped, trailing whitespace held back (reported before
    more text, dropped when the field ends)."""

    __slots__ = ("field", "spaces", "started")

    def __init__(self, field: str) -> None:
        self.field = field
        self.started = False  # the first non-space character has been reported
        self.spaces = ""  # whitespace held back

    def report(self, text: str, pieces: list[Piece], *, more: bool) -> None:
        """Report ``text`` of the field; ``more``: the field goes on."""
        if not self.started:
            text = text.lstrip()
            if not text:
                return
            self.started = True
        body = text.rstrip()
        if body:
            pieces.append((self.field, self.spaces + body))
            self.spaces = ""
        self.spaces = self.spaces + text[len(body) :] if more else ""


class ChatFieldParser:
    """``[[ ## field ## ]]`` sections of ``fields`` (output field names), as they arrive.

    A section is the text between its marker and the next marker, stripped
    (:class:`~trio_dspy.ChatAdapter` reads it so); the first section of a name
    counts, field names match in any case, and ``[[ ## completed ## ]]`` ends
    the reading. Text before the first marker is ignored.
    """

    def __init__(self, fields: Collection[str]) -> None:
        self._wanted = {name.lower(): name for name in fields}
        self._seen: set[str] = set()
        self._pending = ""  # text not yet reported or dropped
        self._section: _Stripped | None = None  # the listened section being read
        self._done = False

    def feed(self, delta: str) -> list[Piece]:
        """The pieces ``delta`` completes, in order."""
        if self._done:
            return []
        self._pending += delta
        pieces: list[Piece] = []
        while (match := HEADER_PATTERN.search(self._pending)) is not None:
            self._report(self._pending[: match.start()], pieces)
            self._pending = self._pending[match.end() :]
            if self._open(match.group(1)):
                return pieces
        cut = _marker_start(self._pending)
        self._report(self._pending[:cut], pieces, more=True)
        self._pending = self._pending[cut:]
        return pieces

    def finish(self) -> list[Piece]:
        """The text held back at the end of the last section (it was no marker)."""
        pieces: list[Piece] = []
        if not self._done:
            self._report(self._pending, pieces)
        self._pending, self._done = "", True
        return pieces

    def _open(self, name: str) -> bool:
        """Start the section of marker ``name``; return whether the reading is over."""
        key = name.lower()
        self._section = None
        if key == _COMPLETED:
            self._pending, self._done = "", True
        elif key in self._wanted and key not in self._seen:
            self._section = _Stripped(self._wanted[key])
        self._seen.add(key)
        return self._done

    def _report(self, text: str, pieces: list[Piece], *, more: bool = False) -> None:
        """Report ``text`` of the current section; ``more``: the section goes on."""
        if self._section is not None:
            self._section.report(text, pieces, more=more)


_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_OPENERS = {"{": "}", "[": "]"}


class JSONFieldParser:
    """String values of ``fields`` in the top-level JSON object, as they arrive.

    Anything before the first ``{`` (a code fence, prose) is skipped; nested
    objects and arrays are skipped whole; keys match in any case, the first
    occurrence counts; the reading ends with the object.
    """

    def __init__(self, fields: Collection[str]) -> None:
        self._wanted = {name.lower(): name for name in fields}
        self._seen: set[str] = set()
        self._state = "start"  # start | key | colon | value | string | skip | after | done
        self._key = ""  # the key being read (decoded)
        self._field: str | None = None  # the listened field whose string is being read
        self._escape = ""  # an escape sequence split across deltas, from its backslash
        self._high = ""  # a high surrogate waiting for its low half
        self._in_key = False  # the string being read is a key
        self._nesting: list[str] = []  # closers of the nested value being skipped
        self._skip_string = False  # inside a string of a skipped value
        self._skip_escape = False

    def feed(self, delta: str) -> list[Piece]:
        """The pieces ``delta`` completes, in order."""
        pieces: list[Piece] = []
        i, n = 0, len(delta)
        while i < n and self._state != "done":
            state = self._state
            if state == "string":
                i = self._read_string(delta, i, pieces)
                continue
            if state == "skip":
                i = self._skip(delta, i)
                continue
            ch = delta[i]
            i += 1
            if state == "start":
                if ch == "{":
                    self._state = "key"
            elif ch.isspace():
                continue
            elif state == "key":
                if ch == '"':
                    self._begin_string(key=True)
                elif ch == "}":
                    self._state = "done"
            elif state == "colon":
                if ch == ":":
                    self._state = "value"
            elif state == "value":
                self._begin_value(ch)
            elif state == "after":
                if ch == ",":
                    self._state = "key"
                elif ch == "}":
                    self._state = "done"
        return pieces

    def finish(self) -> list[Piece]:
        """Nothing more: string values are reported as they are read."""
        self._state = "done"
        return []

    # ------------------------------------------------------------- values
    def _begin_value(self, ch: str) -> None:
        if ch == '"':
            key = self._key.lower()
            if key in self._wanted and key not in self._seen:
                self._field = self._wanted[key]
            self._seen.add(key)
            self._begin_string(key=False)
        elif ch in _OPENERS:
            self._seen.add(self._key.lower())
            self._nesting, self._skip_string = [_OPENERS[ch]], False
            self._state = "skip"
        else:  # a number, true, false or null: skipped up to its delimiter
            self._seen.add(self._key.lower())
            self._nesting, self._skip_string = [], False
            self._state = "skip"

    def _skip(self, text: str, i: int) -> int:
        """Skip a nested or scalar value; return the index after what was consumed."""
        for j in range(i, len(text)):
            ch = text[j]
            if self._skip_string:
                if self._skip_escape:
                    self._skip_escape = False
                elif ch == "\\":
                    self._skip_escape = True
                elif ch == '"':
                    self._skip_string = False
            elif not self._nesting:  # a scalar ends at the delimiter that follows it
                if ch == "," or ch == "}":
                    self._state = "after"
                    return j  # the delimiter is read in the "after" state
            elif ch == '"':
                self._skip_string = True
            elif ch in _OPENERS:
                self._nesting.append(_OPENERS[ch])
            elif ch == self._nesting[-1]:
                self._nesting.pop()
                if not self._nesting:
                    self._state = "after"
                    return j + 1
        return len(text)

    # ------------------------------------------------------------ strings
    def _begin_string(self, *, key: bool) -> None:
        self._in_key = key
        if key:
            self._key = ""
        self._state = "string"

    def _read_string(self, text: str, i: int, pieces: list[Piece]) -> int:
        """Decode string text from ``text[i:]``; return the index after what was consumed."""
        out: list[str] = []
        n = len(text)
        while i < n:
            if self._escape:
                i = self._read_escape(text, i, out)
                continue
            # The plain run up to the next quote or backslash goes out as it is.
            j = i
            while j < n and text[j] != '"' and text[j] != "\\":
                j += 1
            if j > i:
                self._flush_high(out)
                out.append(text[i:j])
            if j == n:
                i = n
                break
            if text[j] == '"':
                self._flush_high(out)
                self._emit("".join(out), pieces)
                self._end_string()
                return j + 1
            self._escape = "\\"
            i = j + 1
        self._emit("".join(out), pieces)
        return i

    def _read_escape(self, text: str, i: int, out: list[str]) -> int:
        escape = self._escape
        if len(escape) == 1:  # just the backslash: the letter decides
            escape += text[i]
            i += 1
            if escape[1] != "u":
                self._escape = ""
                self._flush_high(out)
                out.append(_ESCAPES.get(escape[1], escape[1]))
                return i
        need = 6 - len(escape)
        escape += text[i : i + need]
        i += min(need, len(text) - i)
        if len(escape) < 6:
            self._escape = escape
            return i
        self._escape = ""
        try:
            code = int(escape[2:], 16)
        except ValueError:  # not hex: json.loads would refuse it; keep the text
            self._flush_high(out)
            out.append(escape)
            return i
        char = chr(code)
        if 0xD800 <= code <= 0xDBFF:
            self._flush_high(out)
            self._high = char  # wait for the low half, which may come in a later delta
        elif 0xDC00 <= code <= 0xDFFF and self._high:
            high, self._high = self._high, ""
            out.append(chr(0x10000 + ((ord(high) - 0xD800) << 10) + (code - 0xDC00)))
        else:
            self._flush_high(out)
            out.append(char)
        return i

    def _flush_high(self, out: list[str]) -> None:
        """A high surrogate not followed by its low half stands alone (as json.loads keeps it)."""
        if self._high:
            out.append(self._high)
            self._high = ""

    def _emit(self, text: str, pieces: list[Piece]) -> None:
        if not text:
            return
        if self._in_key:
            self._key += text
        elif self._field is not None:
            pieces.append((self._field, text))

    def _end_string(self) -> None:
        if self._in_key:
            self._state = "colon"
        else:
            self._field = None
            self._state = "after"


class XMLFieldParser:
    """``<field>...</field>`` elements of ``fields``, as they arrive.

    ``names`` are every output field of the signature: a tag of any of them
    opens or closes an element as :class:`~trio_dspy.XMLAdapter` reads it,
    and only ``fields`` are reported. A value is its element's text with
    entities decoded and the ends stripped. An element never closed (the
    adapter then reports the field missing) gets no more than what was
    reported before the text stopped.
    """

    def __init__(self, names: Collection[str], fields: Collection[str]) -> None:
        self._scanner = TagScanner(names)
        self._wanted = set(fields)
        self._element: _Stripped | None = None  # the listened element being read
        self._raw = ""  # its text not yet decoded (an entity may be unfinished)

    def feed(self, delta: str) -> list[Piece]:
        """The pieces ``delta`` completes, in order."""
        return self._pieces(self._scanner.feed(delta))

    def finish(self) -> list[Piece]:
        """The end of an element that the held-back text closes; nothing for one left open."""
        pieces = self._pieces(self._scanner.finish())
        self._element = None
        return pieces

    def _pieces(self, events: list[tuple[str, str, str]]) -> list[Piece]:
        pieces: list[Piece] = []
        for kind, field, raw in events:
            if kind == "open":
                self._element = _Stripped(field) if field in self._wanted else None
                self._raw = ""
            elif self._element is None:
                continue
            elif kind == "text":
                self._raw += raw
            else:  # the element closed: all of it is known
                self._element.report(decode_entities(self._raw), pieces, more=False)
                self._element, self._raw = None, ""
        if self._element is not None:
            cut = entity_hold(self._raw)
            self._element.report(decode_entities(self._raw[:cut]), pieces, more=True)
            self._raw = self._raw[cut:]
        return pieces
