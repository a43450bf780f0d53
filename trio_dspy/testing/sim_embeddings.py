"""Deterministic embeddings for the simulated server's ``POST /v1/embeddings``.

A text's vector is a bag of hashed words: each word (lower-cased, ``\\w+``)
adds 1 to the component its seeded hash picks, and the vector is scaled to
length 1. So texts that share words are near each other (their dot product
grows with the words they share), texts that share none are orthogonal but
for hash collisions, and the same text under the same seed always gets the
same vector. Nothing here is a language model: it is a stand-in that tests
and examples can reason about.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from typing import Any

from .sim_wire import tokens

__all__ = [
    "DEFAULT_DIMENSIONS",
    "MAX_DIMENSIONS",
    "MAX_INPUTS",
    "embed_text",
    "embeddings_body",
    "read_embeddings_request",
]

#: The length of the vectors served when a request does not ask for ``dimensions``.
DEFAULT_DIMENSIONS = 64
#: The most ``dimensions`` a request may ask for (OpenAI's largest model has 3072).
MAX_DIMENSIONS = 4096
#: The most texts one request may carry (OpenAI's limit).
MAX_INPUTS = 2048

_WORD = re.compile(r"\w+")


def embed_text(text: str, dimensions: int = DEFAULT_DIMENSIONS, seed: int = 0) -> list[float]:
    """The unit vector of ``text``'s hashed words (all zeros for a text without words).

    Raises:
        ValueError: ``dimensions`` is below 1.
    """
    if dimensions < 1:
        raise ValueError(f"dimensions must be at least 1, got {dimensions}")
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        digest = hashlib.blake2b(f"{seed}:{word}".encode(errors="replace"), digest_size=8)
        vector[int.from_bytes(digest.digest(), "little") % dimensions] += 1.0
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else vector


def read_embeddings_request(
    body: Mapping[str, Any], default_dimensions: int
) -> tuple[list[str], int]:
    """The texts and the vector length an embeddings request asks for.

    Raises:
        ValueError: ``input`` is not a string or a list of 1 to
            :data:`MAX_INPUTS` strings, ``dimensions`` is not a whole number
            from 1 to :data:`MAX_DIMENSIONS`, or ``encoding_format`` is not ``float``.
    """
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise ValueError("`input` must be a string or a list of strings")
    if not 1 <= len(texts) <= MAX_INPUTS:
        raise ValueError(f"`input` must hold 1 to {MAX_INPUTS} texts, got {len(texts)}")
    dimensions = body.get("dimensions", default_dimensions)
    if (
        isinstance(dimensions, bool)
        or not isinstance(dimensions, int)
        or not 1 <= dimensions <= MAX_DIMENSIONS
    ):
        raise ValueError(f"`dimensions` must be a whole number from 1 to {MAX_DIMENSIONS}")
    if body.get("encoding_format", "float") != "float":
        raise ValueError("`encoding_format` must be 'float' on this server")
    return texts, dimensions


def embeddings_body(texts: list[str], *, model: str, dimensions: int, seed: int) -> dict[str, Any]:
    """An OpenAI ``list`` of ``embedding`` objects for ``texts``, in order, with usage."""
    used = sum(tokens(len(t)) for t in texts)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": embed_text(t, dimensions, seed)}
            for i, t in enumerate(texts)
        ],
        "model": model,
        "usage": {"prompt_tokens": used, "total_tokens": used},
    }
