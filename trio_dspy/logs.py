"""The library's loggers: structlog events delivered through the standard ``logging`` module.

A library must not write on its application's streams. Every module logs
through :func:`get_logger`, whose events end in a ``logging.Logger`` under
``"trio_dspy"``; that logger has a ``NullHandler``, so nothing is shown until
the application configures ``logging``::

    logging.basicConfig(level=logging.DEBUG)            # everything
    logging.getLogger("trio_dspy").setLevel(logging.DEBUG)  # or just this library

How an event is rendered:

* structlog not configured by the application: the event becomes one line,
  ``lm.retry attempt=1 delay=0.25 ... trace_id='...'``, with the ids bound in
  ``structlog.contextvars`` (trace, span and request ids) merged in; events
  below the logger's level cost only the level check.
* structlog configured (``structlog.configure(...)``): the application's
  processors run on the event, ``merge_contextvars`` included if it is in
  its chain, and their result goes to the ``logging`` logger, so the stdlib
  integration (``ProcessorFormatter.wrap_for_formatter``) works as usual.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog
from structlog.contextvars import merge_contextvars
from structlog.typing import EventDict

__all__ = ["ROOT", "get_logger"]

#: The name of the library's root logger.
ROOT = "trio_dspy"

logging.getLogger(ROOT).addHandler(logging.NullHandler())

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def _render(logger: logging.Logger, method: str, event_dict: EventDict) -> Any:
    """The one processor of the library's loggers (see the module docstring)."""
    if structlog.is_configured():
        result: Any = event_dict
        for processor in structlog.get_config()["processors"]:
            result = processor(logger, method, result)
        return result
    if not logger.isEnabledFor(_LEVELS.get(method, logging.INFO)):
        raise structlog.DropEvent
    event_dict = merge_contextvars(logger, method, event_dict)
    event_dict.pop("positional_args", None)
    event = str(event_dict.pop("event", ""))
    fields = " ".join(f"{key}={value!r}" for key, value in event_dict.items())
    return f"{event} {fields}" if fields else event


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger writing to ``logging.getLogger(name)``.

    ``name`` should be the module's ``__name__`` (under ``trio_dspy``), so the
    application can tune the library's loggers by name.
    """
    return structlog.stdlib.BoundLogger(logging.getLogger(name), [_render], {})
