"""Wire formats between signatures and models.

``XMLAdapter`` and ``TwoStepAdapter`` are imported when first named, so a
program that speaks the chat or JSON format does not pay for them.
"""

from typing import TYPE_CHECKING, Any

from .base import Adapter
from .chat import ChatAdapter
from .json import JSONAdapter

if TYPE_CHECKING:
    from .two_step import TwoStepAdapter
    from .xml import XMLAdapter

__all__ = ["Adapter", "ChatAdapter", "JSONAdapter", "TwoStepAdapter", "XMLAdapter"]

_LAZY = {"XMLAdapter": ".xml", "TwoStepAdapter": ".two_step"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value
