"""An incremental ``text/event-stream`` (server-sent events) parser.

It follows the WHATWG HTML "event stream interpretation" rules: the body is
UTF-8 (a leading byte-order mark is dropped, broken sequences become U+FFFD);
lines end in CRLF, LF or CR; a line starting with ``:`` is a comment; other
lines are ``field: value`` (one space after the colon is dropped) or a bare
field name; ``data`` lines accumulate (joined by ``\\n``), ``event`` sets the
type, ``id`` the last event ID (unless it contains NUL), ``retry`` the
reconnection time (only when all ASCII digits, and at most
:data:`MAX_RETRY_MS`: a longer one is taken as that); unknown fields are ignored.
A blank line dispatches the event, unless no ``data`` arrived since the last
one. An event still open when the stream ends is dropped, as the
specification says.

:class:`SSEDecoder` takes the body in whatever pieces the network delivers:
a line (or a UTF-8 character, or a CRLF) split between two pieces yields the
same events as the whole body at once.
"""

from __future__ import annotations

import codecs
import re

import attrs

__all__ = ["MAX_RETRY_MS", "SSEDecoder", "SSEEvent"]

_LINE_END = re.compile(r"\r\n|\r|\n")

#: The longest ``retry`` kept (a day, in milliseconds). A longer value is
#: taken as this rather than converted: ``int()`` refuses strings of more
#: than 4,300 digits, and no reconnection waits for years.
MAX_RETRY_MS = 86_400_000
_RETRY_DIGITS = len(str(MAX_RETRY_MS))


@attrs.frozen
class SSEEvent:
    """One dispatched event: its type (``"message"`` unless named), data and last ID."""

    data: str
    event: str = "message"
    id: str = ""


class SSEDecoder:
    """Turns an event-stream body, fed piece by piece, into :class:`SSEEvent`\\ s.

    ``feed(piece)`` returns the events completed by ``piece``; :attr:`retry`
    holds the last valid ``retry`` value (milliseconds), ``None`` until one
    arrives. Raises nothing: whatever the bytes, the result is events or none.
    """

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending: list[str] = []  # the start of a line whose end has not arrived
        self._skip_lf = False  # the last piece ended in CR: a LF now ends nothing
        self._first = True  # a byte-order mark may still come
        self._data: list[str] = []
        self._event = ""
        self._last_id = ""
        self.retry: int | None = None

    def feed(self, piece: bytes) -> list[SSEEvent]:
        """Take the next bytes of the body and return the events they complete."""
        text = self._utf8.decode(piece)
        if self._first and text:
            self._first = False
            if text.startswith("\ufeff"):
                text = text[1:]
        if self._skip_lf and text:
            self._skip_lf = False
            if text.startswith("\n"):
                text = text[1:]
        events: list[SSEEvent] = []
        start = 0
        for match in _LINE_END.finditer(text):
            line = text[start : match.start()]
            if self._pending:  # joined once, when its end arrives: linear in the line
                line = "".join(self._pending) + line
                self._pending = []
            event = self._line(line)
            if event is not None:
                events.append(event)
            start = match.end()
        if start < len(text):
            self._pending.append(text[start:])
        elif text:
            # A CR that ends the piece may be the first half of a CRLF.
            self._skip_lf = text.endswith("\r")
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._last_id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self.retry = _retry_ms(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SSEEvent("\n".join(data), event or "message", self._last_id)


def _retry_ms(digits: str) -> int:
    """The ``retry`` value of a field of ASCII ``digits``, at most :data:`MAX_RETRY_MS`."""
    digits = digits.lstrip("0") or "0"
    if len(digits) > _RETRY_DIGITS:  # never handed to int(): it may be thousands long
        return MAX_RETRY_MS
    return min(int(digits), MAX_RETRY_MS)
