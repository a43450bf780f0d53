"""The OpenAPI 3.1 document of a served app, built from its programs' schemas."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .programs import ProgramSpec

__all__ = ["openapi_document"]

_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "type": {"type": "string"},
                "message": {"type": "string"},
                "request_id": {"type": "string"},
                "field": {"type": "string", "description": "the input's path, for 422"},
            },
            "required": ["type", "message"],
        }
    },
    "required": ["error"],
}
_USAGE = {
    "type": "object",
    "properties": {
        name: {"type": "integer"}
        for name in ("prompt_tokens", "completion_tokens", "total_tokens", "requests")
    },
}
_ERRORS = {
    "401": "no or wrong API key",
    "413": "the body is over the size limit",
    "422": "the body is not JSON, or an input does not fit its field (`error.field` names it)",
    "500": "the program failed (the request id finds it in the server log)",
    "502": "the language model server failed or was unreachable",
    "503": "too many requests at once: retry after `Retry-After` seconds",
    "504": "the program did not finish within its deadline",
}


def _error_responses(secured: bool) -> dict[str, Any]:
    codes = {k: v for k, v in _ERRORS.items() if secured or k != "401"}
    return {
        code: {"description": text, "content": {"application/json": {"schema": _ERROR}}}
        for code, text in codes.items()
    }


def _operations(spec: ProgramSpec, secured: bool) -> dict[str, Any]:
    result = {
        "type": "object",
        "properties": {
            "outputs": spec.output_schema(),
            "usage": _USAGE,
            "request_id": {"type": "string"},
            "trace_id": {"type": "string"},
        },
        "required": ["outputs", "usage", "request_id"],
    }
    body = {
        "required": True,
        "content": {"application/json": {"schema": spec.input_schema()}},
    }
    parameters = [
        {
            "name": "X-Request-Timeout",
            "in": "header",
            "required": False,
            "description": "a shorter deadline for this request, in seconds",
            "schema": {"type": "number", "exclusiveMinimum": 0},
        },
        {
            "name": "traceparent",
            "in": "header",
            "required": False,
            "description": "W3C Trace Context: the request joins the caller's trace",
            "schema": {"type": "string"},
        },
    ]
    call = {
        "operationId": f"call_{spec.name}",
        "summary": spec.instructions.split("\n", 1)[0] or f"Run {spec.name}",
        "parameters": parameters,
        "requestBody": body,
        "responses": {
            "200": {
                "description": "the typed outputs, the tokens spent and the request id",
                "content": {"application/json": {"schema": result}},
            },
            **_error_responses(secured),
        },
    }
    stream = {
        "operationId": f"stream_{spec.name}",
        "summary": f"Stream {spec.name}: server-sent events `chunk`, `status`, then "
        "`prediction` (as the call's 200 body) or `error`",
        "parameters": parameters,
        "requestBody": body,
        "responses": {
            "200": {
                "description": "server-sent events",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **_error_responses(secured),
        },
    }
    return {
        f"/programs/{spec.name}": {"post": call},
        f"/programs/{spec.name}/stream": {"post": stream},
    }


def openapi_document(programs: Mapping[str, ProgramSpec], secured: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 document of an app serving ``programs``. Raises nothing."""
    from .. import __version__

    paths: dict[str, Any] = {
        "/programs": {
            "get": {
                "operationId": "list_programs",
                "summary": "Each program's input and output JSON Schemas",
                "responses": {"200": {"description": "the programs by name"}},
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Whether the server is up",
                "security": [],
                "responses": {"200": {"description": "ok"}},
            }
        },
    }
    for spec in programs.values():
        paths.update(_operations(spec, secured))
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "trio_dspy programs", "version": __version__},
        "paths": paths,
    }
    if secured:
        doc["components"] = {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}
        doc["security"] = [{"bearer": []}]
    return doc
