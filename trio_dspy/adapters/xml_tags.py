"""The ``<name>...</name>`` field tags of the XML wire format, read as text arrives.

A leaf module (it imports nothing of the project), so the adapter, its
incremental stream parser and the simulated server read tags the same way.

:class:`TagScanner` splits a completion into the raw contents of its field
elements. It is fed the text in pieces and reports the same elements however
the text was split: a ``<`` that may still become a field tag is held back
until it cannot. The reading is tolerant of what models write: prose around
the elements, field names in any case, attributes on a tag, ``<name/>`` for
an empty value, unescaped ``&`` and ``<`` inside a value. The first element
of a field counts; a field tag inside another field's element is part of its
text; the same name nested inside itself is counted, so the element ends at
its own closing tag.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

__all__ = [
    "MAX_TAG",
    "XML_REQUIREMENT",
    "Event",
    "TagScanner",
    "decode_entities",
    "elements",
    "entity_hold",
    "escape_text",
    "read_elements",
]

XML_REQUIREMENT = "Respond with the corresponding output fields wrapped in XML tags"
"""How an XML request's user turn opens its closing sentence (DSPy's words)."""

MAX_TAG = 200
"""The most characters between a field tag's name and its ``>`` (attributes)."""

Event = tuple[str, str, str]
"""``("open", field, "")``, ``("text", field, raw)`` or ``("close", field, "")``."""

_ENTITY = re.compile(r"&(?:(amp|lt|gt|quot|apos)|#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6}));")
# A prefix of an _ENTITY match reaching the end of the text.
_ENTITY_PREFIX = re.compile(r"&(?:[a-z]{0,4}|#[0-9]{0,7}|#[xX][0-9a-fA-F]{0,6})\Z")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _entity(match: re.Match[str]) -> str:
    if match.group(1):
        return _NAMED[match.group(1)]
    code = int(match.group(2)) if match.group(2) else int(match.group(3), 16)
    if code == 0 or code > 0x10FFFF:
        return match.group(0)  # no character: the text stays as written
    if 0xD800 <= code <= 0xDFFF:
        return "\ufffd"  # the text policy: a lone surrogate becomes U+FFFD
    return chr(code)


def decode_entities(text: str) -> str:
    """``text`` with XML's five named entities and character references decoded.

    Anything else (``&`` alone, ``&nbsp;``) stays as written.
    """
    return _ENTITY.sub(_entity, text) if "&" in text else text


def entity_hold(text: str) -> int:
    """Where a possible unfinished entity at the end of ``text`` starts (``len(text)``: none)."""
    at = text.rfind("&", max(0, len(text) - 10))
    if at >= 0 and _ENTITY_PREFIX.match(text, at):
        return at
    return len(text)


def escape_text(text: str) -> str:
    """``&`` and ``<`` escaped, as DSPy writes text values inside tags."""
    return text.replace("&", "&amp;").replace("<", "&lt;")


def elements(fields: Mapping[str, str]) -> str:
    """One ``<name>\\ntext\\n</name>`` element per item, text escaped, as an answer writes them."""
    return "\n\n".join(f"<{n}>\n{escape_text(text)}\n</{n}>" for n, text in fields.items())


class TagScanner:
    """Reports the elements of the field ``names`` in a completion fed in pieces.

    :meth:`feed` returns the events the text completes, :meth:`finish` the
    rest. The ``text`` events of a field, joined, are its raw content: the
    text between its opening and its closing tag. A field whose element is
    never closed gets an ``open`` event and no ``close``.
    """

    def __init__(self, names: Collection[str]) -> None:
        self._names = {n.lower(): n for n in names}
        alternation = "|".join(sorted((re.escape(n) for n in names), key=len, reverse=True))
        # Group 1: "/" of a closing tag; 2: the name; 3: attributes (a final "/"
        # makes an empty element).
        self._tag = re.compile(
            rf"<(/?)({alternation})(?=[\s/>])([^<>]{{0,{MAX_TAG}}}?)>", re.IGNORECASE
        )
        self._pending = ""
        self._field: str | None = None  # the field whose element is open
        self._depth = 0  # its own name nested inside it, plus one
        self._seen: set[str] = set()

    def feed(self, delta: str) -> list[Event]:
        """The events ``delta`` completes, in order."""
        events: list[Event] = []
        text = self._pending + delta if self._pending else delta
        if not self._names:
            return events
        pos = 0
        while (match := self._tag.search(text, pos)) is not None:
            self._text(text[pos : match.start()], events)
            self._on_tag(match, events)
            pos = match.end()
        cut = self._hold(text, pos)
        self._text(text[pos:cut], events)
        self._pending = text[cut:]
        return events

    def finish(self) -> list[Event]:
        """The text held back at the end (it was no tag)."""
        events: list[Event] = []
        self._text(self._pending, events)
        self._pending = ""
        return events

    def _text(self, raw: str, events: list[Event]) -> None:
        if raw and self._field is not None:
            events.append(("text", self._field, raw))

    def _on_tag(self, match: re.Match[str], events: list[Event]) -> None:
        name = self._names.get(match.group(2).lower())
        closing = match.group(1) == "/"
        empty = not closing and match.group(3).rstrip().endswith("/")
        if name is None:  # a spelling only case-insensitive matching joins: text
            self._text(match.group(0), events)
            return
        if self._field is None:
            if closing or name in self._seen:
                return  # a stray closing tag, or a field already read: ignored
            self._seen.add(name)
            events.append(("open", name, ""))
            if empty:
                events.append(("close", name, ""))
            else:
                self._field, self._depth = name, 1
            return
        if name == self._field and not empty:
            self._depth += -1 if closing else 1
            if self._depth == 0:
                events.append(("close", name, ""))
                self._field = None
                return
        self._text(match.group(0), events)

    def _hold(self, text: str, pos: int) -> int:
        """Where the text that may still become a field tag starts (``len(text)``: none)."""
        at = text.rfind("<", pos)
        if at < 0 or ">" in text[at:]:
            return len(text)
        body = text[at + 1 :]
        if body.startswith("/"):
            body = body[1:]
        low = body.lower()
        for name in self._names:
            if name.startswith(low):
                return at  # a name still being written
            if (
                low.startswith(name)
                and (low[len(name)].isspace() or low[len(name)] == "/")
                and len(low) - len(name) <= MAX_TAG
            ):
                return at  # attributes still being written
        return len(text)


def read_elements(names: Collection[str], completion: str) -> tuple[dict[str, str], list[str]]:
    """The raw content of each field element of ``completion``, and the fields left open."""
    scanner = TagScanner(names)
    contents: dict[str, list[str]] = {}
    closed: set[str] = set()
    for kind, field, raw in [*scanner.feed(completion), *scanner.finish()]:
        if kind == "open":
            contents[field] = []
        elif kind == "text":
            contents[field].append(raw)
        else:
            closed.add(field)
    found = {f: "".join(parts) for f, parts in contents.items() if f in closed}
    return found, [f for f in contents if f not in closed]
