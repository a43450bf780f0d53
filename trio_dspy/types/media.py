"""What the inline media types (``td.Image``, ``td.Audio``, ``td.File``) share.

Reading a file of bytes without ever holding more than a limit, checking
base64, and the error of a file or payload over the limit.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import BinaryIO

from ..errors import MediaTooLargeError

__all__ = ["MAX_MEDIA_BYTES", "check_limit", "is_base64", "read_limited", "too_large"]

MAX_MEDIA_BYTES = 20 * 1024 * 1024
"""The default limit of inline audio or a file, in bytes (20 MiB), as for images."""

# How much of a file is read at a time: memory grows with the file, never
# with a limit set high.
_CHUNK = 1024 * 1024
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def is_base64(text: str) -> bool:
    """Whether ``text`` is base64 (padding only at the end); a few ms for megabytes."""
    body = text.rstrip("=")
    if not body or len(text) - len(body) > 2 or not body.isascii():
        return False
    return not body.encode("ascii").translate(None, _ALPHABET)


def check_limit(max_bytes: int) -> None:
    """Raise ``ValueError`` unless ``max_bytes`` is a positive integer."""
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive number of bytes, got {max_bytes!r}")


def read_at_most(f: BinaryIO, limit: int) -> bytes:
    """Up to ``limit`` bytes of ``f``, read a chunk at a time until its end."""
    buffer = bytearray()
    while len(buffer) < limit:
        chunk = f.read(min(_CHUNK, limit - len(buffer)))
        if not chunk:
            break
        buffer += chunk
    return bytes(buffer)


def too_large(
    kind: str, path: str | None, size: int | None, limit: int, method: str
) -> MediaTooLargeError:
    """The error of ``kind`` (``"audio"``) at ``path`` (or in memory) over ``limit`` bytes;
    ``method`` (``td.Audio.from_path``) is where to raise the limit."""
    what = f"{path}: the {kind} file" if path is not None else f"the {kind} data"
    has = f"is {size} bytes" if size is not None else f"holds more than {limit} bytes"
    return MediaTooLargeError(
        f"{what} {has}, over the limit of {limit} bytes ({limit / 2**20:g} MiB); "
        f"providers refuse larger inline {kind}. Send less, or raise the "
        f"limit with {method}(..., max_bytes=...)",
        path=path,
        size=size,
        limit=limit,
    )


def read_limited(
    path: str | os.PathLike[str],
    max_bytes: int,
    refuse: Callable[[str, int | None], Exception],
) -> bytes:
    """The bytes of the file at ``path``, refused past ``max_bytes``.

    A regular file's size is checked before a byte is read; whatever the
    file is (one that grows, a pipe), at most ``max_bytes + 1`` bytes are read.
    A file too large raises ``refuse(name, size)`` (size ``None`` when unknown).

    Raises:
        OSError: the file cannot be read.
        Exception: what ``refuse`` gives, for a file larger than ``max_bytes``.
        ValueError: ``max_bytes`` is not a positive integer.
    """
    check_limit(max_bytes)
    name = os.fspath(path)
    with open(path, "rb") as f:
        info = os.fstat(f.fileno())
        if stat.S_ISREG(info.st_mode) and info.st_size > max_bytes:
            raise refuse(name, info.st_size)
        data = read_at_most(f, max_bytes + 1)
    if len(data) > max_bytes:
        # It grew since, or is a pipe or a device: how large it is, is unknown.
        raise refuse(name, None)
    return data
