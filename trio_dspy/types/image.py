"""``td.Image``: an image as the input of a signature field.

An image is kept as a URL: an ``http(s)`` URL the provider fetches itself, or
a ``data:`` URL holding the bytes (base64). Adapters send it as an image
part of the user message (:class:`~trio_dspy.messages.ImagePart`), which each
model client writes in its provider's format.
"""

from __future__ import annotations

import base64
import mimetypes
import os
from typing import Any

import attrs

from ..errors import ImageTooLargeError
from ..messages import ImagePart, short_url
from .media import check_limit as _check_limit
from .media import is_base64 as _is_base64
from .media import read_limited

__all__ = ["MAX_IMAGE_BYTES", "Image", "sniff_image_type"]

MAX_IMAGE_BYTES = 20 * 1024 * 1024
"""The default limit of an inline image, in bytes (20 MiB).

About the largest image a provider takes inline (OpenAI's limit per image is
20 MB; Anthropic's is lower), so nothing larger could be sent anyway, while
reading it costs its size several times over: the bytes, their base64 (4/3
larger), the JSON request. ``from_file(path, max_bytes=...)`` and
``from_bytes(data, max_bytes=...)`` set another limit.
"""

# The formats every provider that takes images accepts, by their first bytes.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_image_type(data: bytes) -> str | None:
    """The MIME type of PNG, JPEG, GIF or WEBP ``data`` by its first bytes; ``None`` otherwise."""
    for magic, mime in _SIGNATURES:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _check_url(_: Any, __: Any, url: str) -> None:
    if not isinstance(url, str):
        raise TypeError(f"an image URL must be a string, got {type(url).__name__}")
    if url.startswith("data:"):
        head, comma, payload = url.partition(",")
        if not comma or not head.endswith(";base64") or not head[5:].startswith("image/"):
            raise ValueError(
                f"{short_url(url)!r} is not a base64 image data: URL "
                "(data:image/<type>;base64,<data>); use td.Image.from_bytes(data)"
            )
        if not _is_base64(payload):
            raise ValueError(f"{short_url(url)!r} does not hold base64 data")
        return
    if not url.startswith(("http://", "https://")):
        raise ValueError(
            f"{url[:80]!r} is not an http(s) or data: URL; "
            "for a local file use td.Image.from_file(path)"
        )


def _too_large(path: str | None, size: int | None, limit: int, method: str) -> ImageTooLargeError:
    what = f"{path}: the image file" if path is not None else "the image data"
    has = f"is {size} bytes" if size is not None else f"holds more than {limit} bytes"
    return ImageTooLargeError(
        f"{what} {has}, over the limit of {limit} bytes ({limit / 2**20:g} MiB); "
        "providers refuse larger inline images. Send a smaller image, or raise the "
        f"limit with td.Image.{method}(..., max_bytes=...)",
        path=path,
        size=size,
        limit=limit,
    )


@attrs.frozen(repr=False)
class Image:
    """An image for an input field typed ``td.Image`` (or ``list[td.Image]``).

    Build it with :meth:`from_url`, :meth:`from_file` or :meth:`from_bytes`.
    ``url`` is an ``http(s)`` URL or a ``data:image/...;base64,`` URL; its
    repr never shows the base64 data.

    Raises:
        ValueError: ``url`` is neither an ``http(s)`` URL nor a base64 image
            ``data:`` URL.
    """

    url: str = attrs.field(validator=_check_url)

    @classmethod
    def from_url(cls, url: str) -> Image:
        """An image the provider fetches from ``url`` (``http(s)://``), or a ``data:`` URL.

        Raises:
            ValueError: ``url`` is not an ``http(s)`` or base64 image ``data:`` URL.
        """
        return cls(url)

    @classmethod
    def from_bytes(
        cls, data: bytes, mime_type: str | None = None, *, max_bytes: int = MAX_IMAGE_BYTES
    ) -> Image:
        """An image of the encoded bytes ``data`` (PNG, JPEG, GIF or WEBP), sent inline.

        ``mime_type`` (``"image/png"``) is read from the bytes when not given.
        ``data`` may be at most ``max_bytes`` long (:data:`MAX_IMAGE_BYTES`,
        20 MiB, by default: about the most a provider takes inline).

        Raises:
            TypeError: ``data`` is not bytes.
            ImageTooLargeError: ``data`` is longer than ``max_bytes`` (a ``ValueError``).
            ValueError: ``data`` is empty, or its type cannot be recognised and
                no ``mime_type`` was given, or ``mime_type`` is not ``image/...``,
                or ``max_bytes`` is not a positive integer.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"image data must be bytes, got {type(data).__name__}")
        _check_limit(max_bytes)
        size = memoryview(data).nbytes
        if size > max_bytes:
            raise _too_large(None, size, max_bytes, "from_bytes")
        data = bytes(data)
        if not data:
            raise ValueError("image data is empty")
        mime = mime_type or sniff_image_type(data)
        if mime is None:
            raise ValueError(
                "cannot tell the image type from its bytes (not PNG, JPEG, GIF or WEBP): "
                "pass mime_type='image/...'"
            )
        if not mime.startswith("image/"):
            raise ValueError(f"mime_type must be an image type (image/...), got {mime!r}")
        return cls(f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}")

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        mime_type: str | None = None,
        *,
        max_bytes: int = MAX_IMAGE_BYTES,
    ) -> Image:
        """The image in the file at ``path``, read now and sent inline.

        The type comes from ``mime_type``, else the bytes, else the file name.

        The file may be at most ``max_bytes`` long (:data:`MAX_IMAGE_BYTES`,
        20 MiB, by default): a larger image is refused by providers anyway,
        and reading one costs its size several times over in memory (bytes,
        base64, request). A regular file's size is checked before a byte is
        read; and whatever the file is (one that grows, a pipe, a device), no
        more than ``max_bytes + 1`` bytes are ever read from it.

        Raises:
            OSError: the file cannot be read (``FileNotFoundError``, ...).
            ImageTooLargeError: the file is larger than ``max_bytes`` (a
                ``ValueError``); its message names the file and its size.
            ValueError: as :meth:`from_bytes`, naming the file.
        """
        name = os.fspath(path)
        data = read_limited(
            path, max_bytes, lambda name, size: _too_large(name, size, max_bytes, "from_file")
        )
        guessed = mimetypes.guess_type(name)[0]
        mime = mime_type or sniff_image_type(data) or guessed
        try:
            return cls.from_bytes(data, mime, max_bytes=max_bytes)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None

    @property
    def mime_type(self) -> str | None:
        """The MIME type of an inline image (``image/png``); ``None`` for a remote URL."""
        if not self.url.startswith("data:"):
            return None
        return self.url[5:].partition(";")[0]

    def part(self) -> ImagePart:
        """The image as a message content part."""
        return ImagePart(self.url)

    def __repr__(self) -> str:
        return f"Image({short_url(self.url)!r})"
