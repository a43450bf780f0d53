"""``td.File``: a document (a PDF, a text file) as the input of a signature field.

As DSPy's ``dspy.File``: inline ``file_data`` (a base64 ``data:`` URL), or a
``file_id`` the provider already holds, and a ``filename``; sent as a
``file`` part of the user message (:class:`~trio_dspy.messages.FilePart`),
which each model client writes in its provider's format. Reprs, history and
spans never show the data.
"""

from __future__ import annotations

import base64
import mimetypes
import os
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from ..messages import FilePart, short_url
from ..unicode import clean_text
from .custom import CustomType
from .media import MAX_MEDIA_BYTES, check_limit, is_base64, read_limited, too_large

__all__ = ["File"]


def _optional_text(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return clean_text(value.strip()) or None


def _check_data(_: Any, __: Any, data: str | None) -> None:
    if data is None:
        return
    head, comma, payload = data.partition(",")
    if not data.startswith("data:") or not comma or not head.endswith(";base64"):
        raise ValueError(
            f"file_data {short_url(data)[:80]!r} is not a base64 data: URL "
            "(data:<mime type>;base64,<data>); use td.File.from_bytes(data) or .from_path(path)"
        )
    if "/" not in head[5:].partition(";")[0]:
        raise ValueError(f"file_data {short_url(data)!r} names no MIME type")
    if not is_base64(payload):
        raise ValueError(f"file_data {short_url(data)!r} does not hold base64 data")


@attrs.frozen(repr=False)
class File(CustomType):
    """A file for an input field typed ``td.File`` (or ``list[td.File]``).

    Build it with :meth:`from_path`, :meth:`from_bytes` or :meth:`from_file_id`.

    Raises:
        ValueError: none of ``file_data``, ``file_id`` and ``filename`` is
            given, or ``file_data`` is not a base64 ``data:`` URL.
        TypeError: a value is not a string.
    """

    file_data: str | None = attrs.field(
        default=None, converter=_optional_text, validator=_check_data
    )
    file_id: str | None = attrs.field(default=None, converter=_optional_text)
    filename: str | None = attrs.field(default=None, converter=_optional_text)
    td_input_only: ClassVar[bool] = True
    td_part: ClassVar[bool] = True

    def __attrs_post_init__(self) -> None:
        if self.file_data is None and self.file_id is None and self.filename is None:
            raise ValueError(
                "td.File needs file_data, file_id or filename; "
                "build it with td.File.from_path(path), .from_bytes(data) or .from_file_id(id)"
            )

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        filename: str | None = None,
        mime_type: str = "application/octet-stream",
        *,
        max_bytes: int = MAX_MEDIA_BYTES,
    ) -> File:
        """A file of the bytes ``data``, sent inline as a ``data:`` URL of ``mime_type``.

        Raises:
            TypeError: ``data`` is not bytes.
            MediaTooLargeError: ``data`` is longer than ``max_bytes`` (20 MiB by default).
            ValueError: ``mime_type`` is not ``type/subtype``.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"file data must be bytes, got {type(data).__name__}")
        check_limit(max_bytes)
        size = memoryview(data).nbytes
        if size > max_bytes:
            raise too_large("file", None, size, max_bytes, "td.File.from_bytes")
        if not isinstance(mime_type, str) or "/" not in mime_type or ";" in mime_type:
            raise ValueError(f"mime_type must look like 'application/pdf', got {mime_type!r}")
        encoded = base64.b64encode(bytes(data)).decode("ascii")
        return cls(f"data:{mime_type};base64,{encoded}", filename=filename)

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        filename: str | None = None,
        mime_type: str | None = None,
        *,
        max_bytes: int = MAX_MEDIA_BYTES,
    ) -> File:
        """The file at ``path``, read now; named by its base name and typed by its
        extension unless ``filename`` / ``mime_type`` are given.

        Raises:
            OSError: the file cannot be read.
            MediaTooLargeError: the file is larger than ``max_bytes`` (20 MiB by default).
        """
        name = os.fspath(path)
        data = read_limited(
            path,
            max_bytes,
            lambda name, size: too_large("file", name, size, max_bytes, "td.File.from_path"),
        )
        mime = mime_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        return cls.from_bytes(data, filename or os.path.basename(name), mime, max_bytes=max_bytes)

    #: ``td.Image``'s name for the same thing.
    from_file = from_path

    @classmethod
    def from_file_id(cls, file_id: str, filename: str | None = None) -> File:
        """A file the provider already holds (uploaded through its files API)."""
        return cls(file_id=file_id, filename=filename)

    @property
    def mime_type(self) -> str | None:
        """The MIME type of inline data (``application/pdf``); ``None`` for a file id."""
        return None if self.file_data is None else self.file_data[5:].partition(";")[0]

    @classmethod
    def td_schema(cls, *, strict: bool = False) -> dict[str, Any]:
        """The saved form: ``file_data`` (a data: URL), ``file_id``, ``filename``."""
        names = ("file_data", "file_id", "filename")
        return {
            "type": "object",
            "properties": {n: {"type": "string"} for n in names},
            "additionalProperties": False,
        }

    @classmethod
    def td_structure(cls, value: Any) -> File:
        """A ``File`` from ``{"file_data", "file_id", "filename"}`` (as saved) or a data URL.

        Raises:
            ValueError: anything else.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping) and value.keys() & {"file_data", "file_id", "filename"}:
            return cls(value.get("file_data"), value.get("file_id"), value.get("filename"))
        if isinstance(value, str) and value.startswith("data:"):
            return cls(value)
        raise ValueError("expected a file as {'file_data': 'data:...', 'filename': ...}")

    def td_unstructure(self) -> dict[str, str]:
        """The fields that are set: DSPy's form, what a saved demo holds."""
        return {k: v for k, v in attrs.asdict(self).items() if v is not None}

    def part(self) -> FilePart:
        """The file as a message content part."""
        return FilePart(self.file_data, self.file_id, self.filename)

    def __repr__(self) -> str:
        parts = []
        if self.file_data is not None:
            size = len(self.file_data.partition(",")[2])
            parts.append(f"file_data=<DATA_URI({self.mime_type}, {size} chars)>")
        if self.file_id is not None:
            parts.append(f"file_id={self.file_id!r}")
        if self.filename is not None:
            parts.append(f"filename={self.filename!r}")
        return f"File({', '.join(parts)})"
