"""Serve programs over HTTP: ``td.serving.app(programs)`` is an ASGI app on trio.

::

    app = td.serving.app({"triage": triage, "answer": answer}, max_concurrency=64,
                         request_timeout=30, api_key=os.environ["SERVE_KEY"])

then ``trio-dspy serve mymodule:app`` (extra ``serve``: hypercorn's trio
worker), or ``trio-dspy serve mymodule:app --server h11`` (the lean HTTP/1.1
server of :mod:`~trio_dspy.serving.h11_server`, for behind a proxy). See
:func:`~trio_dspy.serving.app.app` for the routes and
:mod:`~trio_dspy.serving.programs` for how a program's inputs and outputs are
described.
"""

from __future__ import annotations

from .app import DEFAULT_MAX_BODY_BYTES, TIMEOUT_HEADER, ServingApp, app
from .programs import FieldSpec, ProgramSpec, describe

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "TIMEOUT_HEADER",
    "FieldSpec",
    "ProgramSpec",
    "ServingApp",
    "app",
    "describe",
]
