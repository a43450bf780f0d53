"""Spans as JSON-ready dicts and back (for JSONL files and tests)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cattrs

from .span import AttributeValue, Span, SpanKind, StatusCode, clean_attributes

__all__ = ["span_from_dict", "span_to_dict"]

_converter = cattrs.Converter()
_converter.register_unstructure_hook(SpanKind, lambda kind: kind.name)
_converter.register_structure_hook(SpanKind, lambda value, _: SpanKind[value])
_converter.register_unstructure_hook(StatusCode, lambda code: code.name)
_converter.register_structure_hook(StatusCode, lambda value, _: StatusCode[value])


def _structure_attributes(value: Any, _: Any) -> dict[str, AttributeValue]:
    return clean_attributes(value)


_converter.register_structure_hook_func(
    lambda cls: cls == dict[str, AttributeValue], _structure_attributes
)


def span_to_dict(span: Span) -> dict[str, Any]:
    """A JSON-ready dict of ``span``; enums become their names (``"CLIENT"``)."""
    data: dict[str, Any] = _converter.unstructure(span, Span)
    return data


def span_from_dict(data: Mapping[str, Any]) -> Span:
    """Rebuild a :class:`Span` from :func:`span_to_dict` output (e.g. a JSONL line).

    Raises:
        cattrs.errors.ClassValidationError: the data does not describe a span.
    """
    return _converter.structure(data, Span)
