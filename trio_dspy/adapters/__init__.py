"""Wire formats between signatures and models."""

from .base import Adapter
from .chat import ChatAdapter
from .json import JSONAdapter

__all__ = ["Adapter", "ChatAdapter", "JSONAdapter"]
