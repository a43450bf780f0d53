"""``td.Audio``: audio as the input of a signature field.

As DSPy's ``dspy.Audio``: base64 ``data`` and its ``audio_format``
(``wav``, ``mp3``), sent as an ``input_audio`` part of the user message
(:class:`~trio_dspy.messages.AudioPart`). Reprs, prompts' text, history and
spans show its size, never its data; a cache key hashes it with the rest of
the request.
"""

from __future__ import annotations

import base64
import mimetypes
import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from ..messages import AudioPart
from .custom import CustomType
from .media import MAX_MEDIA_BYTES, check_limit, is_base64, read_limited, too_large

__all__ = ["Audio"]

_FORMAT = re.compile(r"[a-z0-9][a-z0-9.+-]{0,19}")


def _normalize_format(audio_format: Any) -> Any:
    """``x-wav`` -> ``wav``, ``MP3`` / ``mpeg`` -> ``mp3``: the names OpenAI's
    ``input_audio`` takes (``audio/mpeg`` is an ``.mp3`` file's MIME type)."""
    if not isinstance(audio_format, str):
        return audio_format  # the validator names what is wrong
    name = audio_format.strip().lower().removeprefix("x-")
    return "mp3" if name == "mpeg" else name


def _check_data(_: Any, __: Any, data: str) -> None:
    if not isinstance(data, str):
        raise TypeError(f"audio data must be base64 text, got {type(data).__name__}")
    if data.startswith("data:"):
        raise ValueError("a data: URL is not base64 data: use td.Audio.from_data_url(url)")
    if not is_base64(data):
        raise ValueError(
            f"audio data ({len(data)} chars) is not base64; "
            "use td.Audio.from_bytes(data, audio_format=...) for raw bytes"
        )


def _check_format(_: Any, __: Any, audio_format: str) -> None:
    if not isinstance(audio_format, str) or not _FORMAT.fullmatch(audio_format):
        raise ValueError(
            f"audio_format must be a short name such as 'wav' or 'mp3', got {audio_format!r}"
        )


@attrs.frozen(repr=False)
class Audio(CustomType):
    """Audio for an input field typed ``td.Audio`` (or ``list[td.Audio]``).

    Build it with :meth:`from_path`, :meth:`from_bytes` or
    :meth:`from_data_url`, or ``td.Audio(data=<base64>, audio_format="wav")``.

    Raises:
        TypeError: ``data`` is not a string.
        ValueError: ``data`` is not base64, or ``audio_format`` is no short name.
    """

    data: str = attrs.field(validator=_check_data)
    audio_format: str = attrs.field(converter=_normalize_format, validator=_check_format)
    td_input_only: ClassVar[bool] = True
    td_part: ClassVar[bool] = True

    @classmethod
    def from_bytes(
        cls, data: bytes, audio_format: str = "wav", *, max_bytes: int = MAX_MEDIA_BYTES
    ) -> Audio:
        """Audio of the encoded bytes ``data`` (a WAV or MP3 file's bytes), sent inline.

        Raises:
            TypeError: ``data`` is not bytes.
            MediaTooLargeError: ``data`` is longer than ``max_bytes`` (20 MiB by default).
            ValueError: ``data`` is empty, or ``audio_format`` is no short name.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"audio data must be bytes, got {type(data).__name__}")
        check_limit(max_bytes)
        size = memoryview(data).nbytes
        if size > max_bytes:
            raise too_large("audio", None, size, max_bytes, "td.Audio.from_bytes")
        if not size:
            raise ValueError("audio data is empty")
        return cls(base64.b64encode(bytes(data)).decode("ascii"), audio_format)

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        audio_format: str | None = None,
        *,
        max_bytes: int = MAX_MEDIA_BYTES,
    ) -> Audio:
        """The audio in the file at ``path``, read now; its format from the file name
        (``.wav``, ``.mp3``) unless ``audio_format`` is given.

        Raises:
            OSError: the file cannot be read.
            MediaTooLargeError: the file is larger than ``max_bytes`` (20 MiB by default).
            ValueError: the format cannot be told from the name (pass ``audio_format=``).
        """
        name = os.fspath(path)
        if audio_format is None:
            mime = mimetypes.guess_type(name)[0]
            if not mime or not mime.startswith("audio/"):
                raise ValueError(
                    f"{name}: cannot tell the audio format from the file name; "
                    "pass audio_format='wav' (or 'mp3', ...)"
                )
            audio_format = mime.partition("/")[2]
        data = read_limited(
            path,
            max_bytes,
            lambda name, size: too_large("audio", name, size, max_bytes, "td.Audio.from_path"),
        )
        try:
            return cls.from_bytes(data, audio_format, max_bytes=max_bytes)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None

    #: ``td.Image``'s name for the same thing.
    from_file = from_path

    @classmethod
    def from_data_url(cls, url: str) -> Audio:
        """Audio of a ``data:audio/<format>;base64,<data>`` URL.

        Raises:
            ValueError: ``url`` is not a base64 audio ``data:`` URL.
        """
        head, comma, payload = url.partition(",") if isinstance(url, str) else ("", "", "")
        mime = head.removeprefix("data:").partition(";")[0]
        if not comma or not head.startswith("data:audio/") or not head.endswith(";base64"):
            shown = url[:40] if isinstance(url, str) else type(url).__name__
            raise ValueError(
                f"{shown!r} is not a base64 audio data: URL (data:audio/<format>;base64,...)"
            )
        return cls(payload, mime.partition("/")[2])

    @classmethod
    def from_url(cls, url: str) -> Audio:
        """Not provided: a provider takes audio inline only, so it is never fetched for you.

        Raises:
            ValueError: always; fetch the bytes and use :meth:`from_bytes`.
        """
        raise ValueError(
            "td.Audio.from_url is not provided: providers take audio inline, and trio_dspy "
            "makes no HTTP request of its own here. Fetch the bytes with your HTTP client and "
            "use td.Audio.from_bytes(data, audio_format='wav')"
        )

    @classmethod
    def td_schema(cls, *, strict: bool = False) -> dict[str, Any]:
        """The saved form: ``{"data": <base64>, "audio_format": "wav"}``."""
        text = {"type": "string"}
        return {
            "type": "object",
            "properties": {"data": {**text, "contentEncoding": "base64"}, "audio_format": text},
            "required": ["data", "audio_format"],
            "additionalProperties": False,
        }

    @classmethod
    def td_structure(cls, value: Any) -> Audio:
        """An ``Audio`` from ``{"data", "audio_format"}`` (as saved) or a data URL.

        Raises:
            ValueError: anything else.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping) and {"data", "audio_format"} <= value.keys():
            return cls(value["data"], value["audio_format"])
        if isinstance(value, str) and value.startswith("data:"):
            return cls.from_data_url(value)
        raise ValueError("expected audio as {'data': <base64>, 'audio_format': 'wav'}")

    def td_unstructure(self) -> dict[str, str]:
        """``{"data", "audio_format"}``: DSPy's fields, what a saved demo holds."""
        return {"data": self.data, "audio_format": self.audio_format}

    def part(self) -> AudioPart:
        """The audio as a message content part."""
        return AudioPart(self.data, self.audio_format)

    def __repr__(self) -> str:
        size = len(self.data)
        return f"Audio(data=<AUDIO_BASE_64_ENCODED({size})>, audio_format={self.audio_format!r})"
