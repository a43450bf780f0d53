"""Inputs that are more than text: images become message parts, a History earlier turns.

An image input is written into the prompt text as a marker holding its URL
(:func:`image_text`); :func:`user_content` then cuts the finished user
message at the markers into text and image parts, so an image sits exactly
where its field's value goes: text before, the image, text after, as DSPy
sends it. An image anywhere else -- in a field typed ``str``, ``Any``, a list,
a dict or a record -- is refused (:func:`refuse_images`): written as JSON text,
its base64 would land in the prompt, ``inspect_history`` and traced spans.
A ``td.History`` input is not a section at all: :func:`split_history`
takes it out of the signature and the inputs, and the adapter writes its
messages as user/assistant turns before the current inputs.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from ..errors import SignatureError
from ..messages import (
    AudioPart,
    ContentPart,
    FilePart,
    ImagePart,
    Message,
    TextPart,
    text_message,
)
from ..signature import Signature, signature_from_fields
from ..types import History, Image, is_pydantic_model, type_name
from ..types.custom import CustomType

__all__ = [
    "find_image",
    "given_fields",
    "history_field",
    "image_text",
    "refuse_images",
    "split_history",
    "user_content",
    "user_message",
    "without_fields",
]

# A NUL and a per-process nonce: text a user passes in cannot forge a marker
# and smuggle an image URL into the request. ASCII, so a long prompt stays a
# one-byte-per-character string while megabytes of base64 pass through it.
_OPEN = f"\x00image-{secrets.token_hex(6)}:"
_CLOSE = "\x00"
# Audio and files carry more than a URL: their marker holds the part's fields
# as JSON (which escapes every control character, so never a NUL) after this.
_FIELDS = "\x01"


def _is_media(value: Any) -> bool:
    """An input sent as a part of its own: an image, audio, a file."""
    return isinstance(value, Image) or (isinstance(value, CustomType) and value.td_part)


def _mark(value: Any) -> str:
    if isinstance(value, Image):
        return f"{_OPEN}{value.url}{_CLOSE}"
    part = value.part()
    return f"{_OPEN}{_FIELDS}{json.dumps([type(part).__name__, *attrs.astuple(part)])}{_CLOSE}"


def _unmark(text: str) -> ContentPart:
    if not text.startswith(_FIELDS):
        return ImagePart(text)
    kind, *fields = json.loads(text[len(_FIELDS) :])
    return AudioPart(*fields) if kind == "AudioPart" else FilePart(*fields)


def image_text(value: Any) -> str | None:
    """The marker text of an image input (``Image``, or a list of them), else ``None``.

    ``None`` means the value is not images (a ``None`` for an ``Optional``
    field); it is then shown as any other value.

    Raises:
        TypeError: ``value`` is neither an image, a list of images nor ``None``.
    """
    if _is_media(value):
        return _mark(value)
    if isinstance(value, list | tuple) and all(_is_media(v) for v in value):
        return "".join(_mark(v) for v in value)
    if value is None:
        return None
    raise TypeError(
        f"an input typed Image needs a td.Image (td.Image.from_url, .from_file or "
        f".from_bytes), or a list of them (td.Audio / td.File likewise); "
        f"got {type(value).__name__}"
    )


_LEAVES = (str, bytes, bytearray, int, float, bool, type(None), enum.Enum)
_EXACT_LEAVES = frozenset({str, int, float, bool, type(None)})

# A step into a value: ``("[]", key)`` for an item, ``(".", name)`` for an attribute.
_Step = tuple[str, Any]
# The steps from the top to a value, as a linked list: ``(parent trail, step)``;
# built as cheaply as a tuple, rendered only for the image found.
_Trail = tuple["_Trail", _Step] | None


def find_image(value: Any) -> str | None:
    """Where a ``td.Image`` sits inside ``value``, else ``None``.

    The answer is a path to append to the field's name: ``""`` for ``value``
    itself, ``"[1]"``, ``"['photos'][0]"``, ``".extra"``. It looks inside
    lists, tuples, sets, mappings (their values), attrs classes, dataclasses
    and pydantic models, the values an adapter writes as JSON; each object is
    visited once, so shared or cyclic values end, and deep nesting costs no
    recursion. Raises nothing.
    """
    stack: list[tuple[Any, _Trail]] = [(value, None)]
    seen: set[int] = set()
    while stack:
        item, trail = stack.pop()
        if isinstance(item, _LEAVES):
            continue
        if _is_media(item):
            return _render(trail)
        if id(item) in seen:
            continue
        seen.add(id(item))
        # Strings and numbers, most items, hold nothing to look into.
        cls = type(item)
        if cls is list or cls is tuple:  # the common containers, without the generic walk
            children = [
                (v, (trail, ("[]", i))) for i, v in enumerate(item) if type(v) not in _EXACT_LEAVES
            ]
        elif cls is dict:
            children = [
                (v, (trail, ("[]", k))) for k, v in item.items() if type(v) not in _EXACT_LEAVES
            ]
        else:
            children = [
                (v, (trail, step)) for step, v in _children(item) if type(v) not in _EXACT_LEAVES
            ]
        children.reverse()  # the first child is looked at first
        stack.extend(children)
    return None


def _render(trail: _Trail, width: int = 120) -> str:
    """The path of ``trail`` as Python would index it, its middle cut past ``width``."""
    steps: list[str] = []
    while trail is not None:
        trail, (kind, key) = trail
        steps.append(f"[{key!r}]" if kind == "[]" else f".{key}")
    path = "".join(reversed(steps))
    return path if len(path) <= width else f"{path[: width // 2]}…{path[-width // 2 :]}"


def _children(item: Any) -> Iterable[tuple[_Step, Any]]:
    """``(step, value)`` of what ``item`` holds, as JSON would show it."""
    if isinstance(item, Mapping):
        return ((("[]", k), v) for k, v in item.items())
    if isinstance(item, list | tuple | set | frozenset):
        return ((("[]", i), v) for i, v in enumerate(item))
    cls = type(item)
    if attrs.has(cls):
        return (((".", a.name), getattr(item, a.name, None)) for a in attrs.fields(cls))
    if dataclasses.is_dataclass(item):
        return (((".", f.name), getattr(item, f.name, None)) for f in dataclasses.fields(item))
    if is_pydantic_model(cls):
        extra = getattr(item, "__pydantic_extra__", None) or {}
        return (((".", k), v) for k, v in {**vars(item), **extra}.items())
    return ()


def refuse_images(value: Any, annotation: Any, field: str) -> None:
    """Refuse a ``td.Image`` anywhere in ``value``, the value of a field not typed for images.

    Only a field typed ``td.Image`` or ``list[td.Image]`` (or ``Optional``)
    sends an image, as an image part. Anywhere else it would be written as
    JSON text: its base64 in the prompt, the history and traced spans, and a
    model that never sees a picture.

    Raises:
        SignatureError: ``value`` holds an image; the message names ``field``
            and where in it the image is, and says how to declare the field.
            It never shows the image's data.
    """
    path = find_image(value)
    if path is None:
        return
    where = f" at {field}{path}" if path else ""
    raise SignatureError(
        f"field `{field}` is typed {type_name(annotation)} but holds a td.Image, td.Audio "
        f"or td.File{where}; media is never sent as text. Declare the field with its type "
        f"(`{field}: td.Image = td.InputField()`, or list[td.Image] for several; "
        "td.Audio and td.File alike) so that it goes to the model as what it is"
    )


def user_message(text: str) -> Message:
    """The user message of ``text`` (:func:`user_content`): a text message, or
    its text and image parts when it holds image markers. Raises nothing."""
    content = user_content(text)
    if type(content) is str:  # the usual prompt: built without attrs' checks
        return text_message("user", content)
    return Message("user", content)


def user_content(text: str) -> str | tuple[ContentPart, ...]:
    """A user message's content: ``text`` itself, or its text and image parts
    in order when it holds image markers."""
    at = text.find(_OPEN)
    if at < 0:
        return text
    parts: list[ContentPart] = []
    done = 0
    while at >= 0:
        end = text.find(_CLOSE, at + len(_OPEN))
        if end < 0:
            break
        if at > done:
            parts.append(TextPart(text[done:at]))
        parts.append(_unmark(text[at + len(_OPEN) : end]))
        done = end + len(_CLOSE)
        at = text.find(_OPEN, done)
    if done < len(text):
        parts.append(TextPart(text[done:]))
    return tuple(parts)


@functools.lru_cache(maxsize=256)
def history_field(signature: type[Signature]) -> str | None:
    """The name of ``signature``'s ``td.History`` input, if it has one."""
    return next((n for n, f in signature.input_fields.items() if f.annotation is History), None)


@functools.lru_cache(maxsize=256)
def without_fields(signature: type[Signature], names: frozenset[str]) -> type[Signature]:
    """``signature`` without the fields named in ``names`` (built once for each)."""
    fields = [f for f in signature.fields.values() if f.name not in names]
    return signature_from_fields(signature.__name__, fields, signature.instructions)


def given_fields(signature: type[Signature], values: Mapping[str, Any]) -> type[Signature]:
    """``signature`` limited to the fields ``values`` has (its outputs all kept
    when it has none), so a history turn shows only what was said, as DSPy's does."""
    names = frozenset(n for n in signature.fields if n in values)
    if len(names) == len(signature.fields):
        return signature
    return _limited(signature, names)


@functools.lru_cache(maxsize=256)
def _limited(signature: type[Signature], names: frozenset[str]) -> type[Signature]:
    no_outputs = names.isdisjoint(signature.output_fields)
    fields = [
        f for f in signature.fields.values() if f.name in names or (no_outputs and not f.is_input)
    ]
    return signature_from_fields(signature.__name__, fields, signature.instructions)


def split_history(
    signature: type[Signature], inputs: Mapping[str, Any]
) -> tuple[type[Signature], Mapping[str, Any], Sequence[Mapping[str, Any]]]:
    """``signature`` and ``inputs`` without the History input, and its messages.

    A signature without one comes back as is, with no messages. The
    messages keep the keys that are fields of the signature.

    Raises:
        TypeError: the History input is not a ``td.History`` (nor ``None``),
            or one of its messages has no field of the signature.
    """
    name = history_field(signature)
    if name is None:
        return signature, inputs, ()
    history = inputs.get(name)
    if history is not None and not isinstance(history, History):
        raise TypeError(
            f"{signature.__name__}.{name} needs a td.History(messages=[...]), "
            f"got {type(history).__name__}"
        )
    rest = without_fields(signature, frozenset({name}))
    turns = []
    for i, message in enumerate(history.messages if history else ()):
        known = {k: v for k, v in message.items() if k in rest.fields}
        if not known:
            raise TypeError(
                f"{signature.__name__}.{name}: message {i} has none of the signature's fields "
                f"({', '.join(rest.fields)}); it has {', '.join(map(str, message)) or 'none'}"
            )
        turns.append(known)
    return rest, {k: v for k, v in inputs.items() if k != name}, turns
