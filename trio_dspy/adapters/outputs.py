"""Reading output values out of a completion: a JSON object of the outputs,
and each found value structured into its field's type.

The JSON format reads its answers this way, the tool-calling ``finish`` call's
arguments too, and the chat and XML formats fall back to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import AdapterParseError, StructuringError
from ..signature import Signature
from ..types import accepts_str, find_json, loads_json, parse_text, strip_code_fences, structure

__all__ = ["parse_json_outputs", "read_fields"]


def parse_json_outputs(
    signature: type[Signature], completion: str, *, adapter: str = "JSONAdapter"
) -> dict[str, Any]:
    """Find the JSON object of the outputs in ``completion`` and structure each field.

    Tolerates code fences, prose around the object and field names in any case.

    Raises:
        AdapterParseError: no JSON object, a missing field, or a wrong value
            (``adapter`` names the adapter in the error).
    """
    data = _find_object(completion)
    if data is None:
        raise AdapterParseError(
            "expected a JSON object with the output fields",
            completion=completion,
            adapter=adapter,
            signature=signature.__name__,
        )
    by_lower = {k.lower(): v for k, v in data.items() if isinstance(k, str)}
    missing = [n for n in signature.output_fields if n not in data and n.lower() not in by_lower]
    if missing:
        raise AdapterParseError(
            f"missing output field(s) {', '.join(missing)} in the JSON object",
            completion=completion,
            adapter=adapter,
            signature=signature.__name__,
        )
    found = {
        name: data[name] if name in data else by_lower[name.lower()]
        for name in signature.output_fields
    }
    return read_fields(found, signature, completion, adapter, _json_value)


def _json_value(raw: Any, annotation: Any, path: str) -> Any:
    if isinstance(raw, str) and not accepts_str(annotation):
        return parse_text(raw, annotation, path=path)
    return structure(raw, annotation, path=path)


def read_fields(
    found: Mapping[str, Any],
    signature: type[Signature],
    completion: str,
    adapter: str,
    read: Callable[[Any, Any, str], Any],
) -> dict[str, Any]:
    """Each output field's typed value, ``read(found[name], annotation, path)``.

    Raises:
        AdapterParseError: a value does not fit its field's type; it carries
            ``completion`` and names the path.
    """
    values: dict[str, Any] = {}
    for name, field in signature.output_fields.items():
        try:
            values[name] = read(found[name], field.annotation, name)
        except StructuringError as exc:
            raise AdapterParseError(
                str(exc), completion=completion, adapter=adapter, signature=signature.__name__
            ) from exc
    return values


def _find_object(completion: str) -> dict[str, Any] | None:
    text = strip_code_fences(completion.strip()).strip()
    try:
        data = loads_json(text)
    except ValueError:
        data = find_json(text, "{")  # an object inside prose
    return data if isinstance(data, dict) else None
