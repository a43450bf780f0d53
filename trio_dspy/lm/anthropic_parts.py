"""Audio and file parts of a prompt as Anthropic's Messages API takes them, or the reason not.

Anthropic reads a PDF or plain text as a ``document`` block and an image file
as an ``image`` block; it takes no audio, and a file by id only through its
Files API beta. Those are refused before anything is sent, with
:class:`~trio_dspy.errors.PartUnsupportedError` saying what to send instead.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ..errors import PartUnsupportedError
from ..messages import AudioPart, FilePart
from ..unicode import clean_text

__all__ = ["media_block"]

_TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/csv"})


def _refuse(message: str) -> PartUnsupportedError:
    return PartUnsupportedError(message, provider="anthropic")


def media_block(part: AudioPart | FilePart) -> dict[str, Any]:
    """The content block of ``part``.

    Raises:
        PartUnsupportedError: audio, a file by id, or a file type Anthropic
            does not read (the message names it and the fix).
    """
    if isinstance(part, AudioPart):
        raise _refuse(
            f"Anthropic's Messages API takes no audio input (a td.Audio, {part.format}); "
            "transcribe it first, or send it to a model that hears audio "
            "(openai/gpt-4o-audio-preview)"
        )
    if part.file_data is None:
        raise _refuse(
            f"Anthropic takes a file by id ({part.file_id!r}) only through its Files API beta; "
            "send the file's bytes instead: td.File.from_path(path)"
        )
    head, _, data = part.file_data.partition(",")
    mime = head[5:].partition(";")[0].lower()
    block: dict[str, Any]
    if mime == "application/pdf":
        block = {"type": "document", "source": {"type": "base64", "media_type": mime, "data": data}}
    elif mime in _TEXT_TYPES:
        try:
            text = base64.b64decode(data, validate=True).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError):
            raise _refuse(f"the file {part.filename or ''} does not hold base64 data") from None
        source = {"type": "text", "media_type": "text/plain", "data": clean_text(text)}
        block = {"type": "document", "source": source}
    elif mime.startswith("image/"):
        return {"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}}
    else:
        raise _refuse(
            f"Anthropic reads PDF, plain-text and image files, not {mime} "
            f"({part.filename or 'a td.File'}); convert it, or send its text in a str field"
        )
    if part.filename:
        block["title"] = part.filename
    return block
