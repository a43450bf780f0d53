"""The ``[[ ## name ## ]]`` field markers of DSPy's chat format, spelled in one place.

A leaf module (it imports nothing of the project), so the adapters, agents,
the scripted test model and the simulated server all write and read the same
markers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["COMPLETED", "HEADER_PATTERN", "field_header", "sections"]


def field_header(name: str) -> str:
    """The marker that opens field ``name``'s section: ``[[ ## name ## ]]``."""
    return f"[[ ## {name} ## ]]"


COMPLETED = field_header("completed")
"""The marker that ends an answer: ``[[ ## completed ## ]]``."""

HEADER_PATTERN = re.compile(r"\[\[\s*##\s*([A-Za-z_]\w*)\s*##\s*\]\]")
"""Finds a field marker, spacing tolerated; group 1 is the field name."""


def sections(fields: Mapping[str, str]) -> str:
    """One ``[[ ## name ## ]]`` section per item, its text on the following lines."""
    return "\n\n".join([f"{field_header(name)}\n{text}" for name, text in fields.items()])
