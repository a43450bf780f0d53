"""Wire formats between signatures and models."""

from .base import Adapter
from .chat import ChatAdapter
from .json import JSONAdapter
from .two_step import TwoStepAdapter
from .xml import XMLAdapter

__all__ = ["Adapter", "ChatAdapter", "JSONAdapter", "TwoStepAdapter", "XMLAdapter"]
