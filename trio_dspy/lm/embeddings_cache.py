"""Embeddings kept in an LM cache (memory, disk, Redis): one entry per text.

An entry is keyed by the SHA-256 of the model, the server, the request
fields (never credentials) and the text, so a text embedded once is never
sent again, whichever batch it comes in. The vector is stored as the JSON
text of a :class:`~trio_dspy.messages.LMResponse`, which lets every
:class:`~trio_dspy.lm.cache.Cache` (``td.RedisCache`` included) keep it. An
entry that does not read back as a finite vector is a miss, never an answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from ..logs import get_logger
from ..messages import LMResponse
from ..vectors import VectorizerError, checked_vectors
from .cache import Cache, cache_lookup, cache_store

__all__ = ["entry_key", "lookup", "store"]

log = get_logger(__name__)

# Never let a credential that slipped into the request fields reach a key.
_SECRET_FIELDS = frozenset({"api_key", "authorization", "headers", "extra_headers"})


def entry_key(model: str, base_url: str, params: Mapping[str, Any], text: str) -> str:
    """The SHA-256 hex digest naming ``text``'s vector from this model, server and fields."""
    doc = {
        "kind": "embedding",
        "model": model,
        "base_url": base_url,
        "params": {k: v for k, v in params.items() if k.lower() not in _SECRET_FIELDS},
        "input": text,
    }
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)
    return hashlib.sha256(raw.encode(errors="replace")).hexdigest()


async def lookup(cache: Cache, keys: list[str]) -> list[list[float] | None]:
    """The vector stored under each key, ``None`` for a miss (or an unreadable entry).

    Raises nothing: a failing cache is logged and every key is a miss.
    """
    found: list[list[float] | None] = []
    for key in keys:
        entry = await cache_lookup(cache, key)
        found.append(None if entry is None else _vector(cache, key, entry))
    return found


async def store(cache: Cache, keys: list[str], vectors: list[list[float]], model: str) -> None:
    """Store each vector under its key. Raises nothing: a failure is logged."""
    for key, vector in zip(keys, vectors, strict=True):
        await cache_store(cache, key, LMResponse(text=json.dumps(vector), model=model))


def _vector(cache: Cache, key: str, entry: Any) -> list[float] | None:
    try:
        [vector] = checked_vectors([json.loads(entry.text)], 1, "a cached entry", None)
    except (VectorizerError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        log.warning("embeddings.cache_entry_unreadable", cache=repr(cache), key=key, error=str(exc))
        return None
    return vector
