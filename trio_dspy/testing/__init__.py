"""Test doubles: a scripted in-process model and a simulated HTTP server."""

from .dummy import DummyLM

__all__ = ["DummyLM"]
