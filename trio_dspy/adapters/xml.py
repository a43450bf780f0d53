"""DSPy's XML wire format: each field is a ``<name>...</name>`` element.

Prompts and demos read as DSPy 3.4's ``XMLAdapter`` writes them: the system
message lists the fields, shows each input as ``<name>\\n{name}\\n</name>``
and each output the same way with its type note, then the instructions; the
user turn ends with ``Respond with the corresponding output fields wrapped in
XML tags `<answer>`, then ...``. Values that are not strings are JSON inside
their element, except outputs typed as a list, a dict, an attrs class,
dataclass or pydantic model (or ``Optional`` of one): as in DSPy 3.4 those
are nested XML, whose layout the prompt shows
(``<items><item><name>...</name></item></items>``); lists are ``<item>``
elements, keys that are no tag names are ``<entry key="...">``. Output text
in demos escapes ``&`` and ``<``.

Parsing accepts what models really write (:mod:`~trio_dspy.adapters.xml_tags`):
prose around the elements, unescaped ``&`` and ``<`` in text, JSON instead
of nested XML, and a whole answer given as a JSON object (read as
:class:`~trio_dspy.JSONAdapter` reads it). After an answer that does not
parse, the re-ask is :class:`~trio_dspy.JSONAdapter`'s structured request,
as DSPy's XMLAdapter inherits its ChatAdapter's fallback.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, get_args, get_origin

from ..errors import AdapterParseError, StructuringError
from ..signature import Signature
from ..types import (
    MAX_JSON_DEPTH,
    image_annotation,
    is_pydantic_model,
    is_record,
    json_schema,
    parse_text,
    structure,
    unstructure,
)
from ..types.support import is_union, non_none
from ..unicode import clean_text
from .base import Adapter
from .inputs import refuse_images
from .json import JSONFallback
from .outputs import parse_json_outputs, read_fields
from .prompt import (
    STRUCTURE_INTRO,
    field_descriptions,
    format_value,
    objective,
    type_note,
)
from .streaming import XMLFieldParser
from .xml_tags import XML_REQUIREMENT, decode_entities, escape_text, read_elements

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

__all__ = ["XMLAdapter", "nested_xml", "value_to_xml", "xml_skeleton"]

_MISSING = "Not supplied for this particular example."
# One shared instance: its system-prompt cache then serves every re-ask.
_ROOT = "dspy_root"


class XMLAdapter(JSONFallback, Adapter):
    """The ``<name>...</name>`` format of DSPy's ``XMLAdapter``.

    Args:
        use_json_adapter_fallback: when an answer does not parse, re-ask once
            with :class:`~trio_dspy.JSONAdapter`'s structured request, as
            :class:`~trio_dspy.ChatAdapter` does. ``False``: re-ask in this
            format, showing the error.
    """

    name = "XMLAdapter"

    # ------------------------------------------------------------ formatting
    def system_prompt(self, signature: type[Signature]) -> str:
        """Fields, the structure of inputs and outputs as elements, the instructions."""
        inputs = [_element(n, f"{{{n}}}") for n in signature.input_fields]
        outputs = []
        for n, f in signature.output_fields.items():
            if nested_xml(f.annotation):
                outputs.append(xml_skeleton(n, f.annotation))
                continue
            note = type_note(f.annotation)
            note = f"        # note: the value you produce {note}" if note else ""
            outputs.append(_element(n, f"{{{n}}}{note}"))
        parts = [
            field_descriptions(signature),
            STRUCTURE_INTRO,
            *(["\n\n".join(inputs)] if inputs else []),
            "\n\n".join(outputs),
            objective(signature),
        ]
        return "\n\n".join(parts)

    def format_inputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        """One element per input given; non-string values as JSON."""
        return "\n\n".join(
            _element(n, format_value(values[n], f.annotation, field=n))
            for n, f in signature.input_fields.items()
            if n in values
        )

    def format_outputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        """Output elements as the model should write them (used for demos).

        Text is escaped; list, dict and class values are nested XML; a
        missing output says so.
        """
        out = []
        for n, f in signature.output_fields.items():
            if n not in values:
                out.append(_element(n, _MISSING))
                continue
            value = values[n]
            if nested_xml(f.annotation):
                refuse_images(value, f.annotation, n)
                data = unstructure(value, f.annotation)
                if data is None or isinstance(data, dict | list):
                    out.append(value_to_xml(data, n))
                    continue
            text = format_value(value, f.annotation, field=n)
            out.append(_element(n, escape_text(text) if f.annotation is str else text))
        return "\n\n".join(out)

    def output_requirements(self, signature: type[Signature]) -> str:
        """``Respond with the corresponding output fields wrapped in XML tags ...``."""
        fields = ", then ".join(f"`<{n}>`" for n in signature.output_fields)
        schemas = [
            xml_skeleton(n, f.annotation)
            for n, f in signature.output_fields.items()
            if nested_xml(f.annotation)
        ]
        nested = f" Use this nested XML structure: {' '.join(schemas)}" if schemas else ""
        return f"{XML_REQUIREMENT} {fields}.{nested}"

    def stream_parser(self, signature: type[Signature], fields: Sequence[str]) -> XMLFieldParser:
        """A fresh :class:`~trio_dspy.adapters.streaming.XMLFieldParser` of ``fields``."""
        return XMLFieldParser(list(signature.output_fields), fields)

    # --------------------------------------------------------------- parsing
    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """Read each output element and structure it to its field's type.

        Lone surrogates in ``completion`` become U+FFFD first (the text
        policy, for text that did not come through a model client).

        Raises:
            AdapterParseError: an output element is missing, never closed, or
                holds a value that does not fit its type, and the completion
                is not a usable JSON object either.
        """
        completion = clean_text(completion)
        try:
            return self._parse_elements(signature, completion)
        except AdapterParseError as xml_error:
            try:
                return parse_json_outputs(signature, completion, adapter=self.name)
            except AdapterParseError:
                # The XML reading's error is the one to report, with its cause.
                raise xml_error from xml_error.__cause__

    def _parse_elements(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        found, unclosed = read_elements(signature.output_fields, completion)
        missing = [n for n in signature.output_fields if n not in found]
        if missing:
            never_closed = [n for n in missing if n in unclosed]
            note = (
                f" ({', '.join(f'<{n}>' for n in never_closed)} never closed)"
                if never_closed
                else ""
            )
            raise AdapterParseError(
                f"missing output field(s) {', '.join(missing)}{note}: expected a "
                "`<name>...</name>` element for each",
                completion=completion,
                adapter=self.name,
                signature=signature.__name__,
            )
        return read_fields(
            found,
            signature,
            completion,
            self.name,
            lambda raw, annotation, path: read_value(raw, annotation, path=path),
        )


def _element(name: str, text: str) -> str:
    return f"<{name}>\n{text}\n</{name}>"


# ------------------------------------------------------------- nested values
def nested_xml(annotation: Any) -> bool:
    """Whether an output of this type is written as nested XML (DSPy 3.4's rule).

    Lists, dicts, attrs classes, dataclasses and pydantic models are, alone or
    ``Optional``; a union of several types, a tuple and a scalar are JSON or
    text inside their element.
    """
    if is_union(annotation):
        members = non_none(get_args(annotation))
        if len(members) != 1:
            return False
        annotation = members[0]
    origin = get_origin(annotation)
    item = get_args(annotation)[0] if origin is list and get_args(annotation) else annotation
    if image_annotation(item):
        return False
    return origin in (list, dict) or is_record(annotation) or is_pydantic_model(annotation)


def value_to_xml(value: Any, tag: str, key: str | None = None) -> str:
    """JSON-like ``value`` as nested XML in element ``tag`` (DSPy's layout).

    A list is ``<item>`` elements; a dict is one element per key, or
    ``<entry key="...">`` for a key that is no tag name; ``None`` and an empty
    list are an empty element; text is escaped.
    """
    attrs = f" key={_quote_attribute(key)}" if key is not None else ""
    if isinstance(value, list):
        children = "".join(value_to_xml(item, "item") for item in value)
        return f"<{tag}{attrs}>{children}</{tag}>" if children else f"<{tag}{attrs} />"
    if isinstance(value, dict):
        parts = []
        for name, child in value.items():
            name = str(name)
            valid = (name[:1] + name[1:].replace("-", "_").replace(".", "_")).isidentifier()
            parts.append(value_to_xml(child, name) if valid else value_to_xml(child, "entry", name))
        return f"<{tag}{attrs}>{''.join(parts)}</{tag}>"
    if value is None:
        return f"<{tag}{attrs} />"
    return f"<{tag}{attrs}>{escape_text(str(value))}</{tag}>"


def _quote_attribute(value: str) -> str:
    """``value`` as a double-quoted attribute value (``xml.sax.saxutils.quoteattr``
    would load ``urllib.request`` with ``import trio_dspy``)."""
    for raw, entity in _ATTRIBUTE_ENTITIES:
        value = value.replace(raw, entity)
    return f'"{value}"'


_ATTRIBUTE_ENTITIES = (
    ("&", "&amp;"),
    ("<", "&lt;"),
    (">", "&gt;"),
    ('"', "&quot;"),
    ("\n", "&#10;"),
    ("\r", "&#13;"),
    ("\t", "&#9;"),
)


def xml_skeleton(tag: str, annotation: Any) -> str:
    """The nested layout of an output of type ``annotation``: ``<tag><item>...</item></tag>``.

    Raises:
        SignatureError: ``annotation`` is not a supported type.
    """
    schema = json_schema(annotation)
    return _schema_to_xml(tag, schema, schema.get("$defs", {}), frozenset())


def _schema_to_xml(tag: str, schema: Any, defs: Mapping[str, Any], seen: frozenset[str]) -> str:
    if not isinstance(schema, dict):
        return f"<{tag}>...</{tag}>"
    if ref := schema.get("$ref"):
        name = str(ref).rsplit("/", 1)[-1]
        if name in seen or name not in defs:
            return f"<{tag}>...</{tag}>"
        return _schema_to_xml(tag, defs[name], defs, seen | {name})
    if choices := schema.get("anyOf"):
        chosen = next((s for s in choices if s.get("type") != "null"), choices[0])
        return _schema_to_xml(tag, chosen, defs, seen)
    if schema.get("type") == "array":
        return f"<{tag}>{_schema_to_xml('item', schema.get('items', {}), defs, seen)}</{tag}>"
    children = "".join(
        _schema_to_xml(name, child, defs, seen)
        for name, child in schema.get("properties", {}).items()
    )
    return f"<{tag}>{children}</{tag}>" if children else f"<{tag}>...</{tag}>"


def read_value(raw: str, annotation: Any, *, path: str) -> Any:
    """The typed value of one element's raw content.

    Text is decoded and stripped; a nested-XML type is read from its child
    elements (or from the JSON or text inside the element when it has none);
    other types are read from their text as
    :func:`~trio_dspy.types.parse_text` reads it.

    Raises:
        StructuringError: the content does not describe a valid ``annotation``.
    """
    if annotation is str:
        return decode_entities(raw).strip()
    if nested_xml(annotation):
        root = _parse_xml(raw, path)
        if root is not None:
            schema = json_schema(annotation)
            data = _elements_value([root], schema, schema.get("$defs", {}))
            if not isinstance(data, str):
                return structure(data, annotation, path=path)
            return parse_text(data, annotation, path=path)
    text = decode_entities(raw).strip()
    if not text and is_union(annotation) and type(None) in get_args(annotation):
        return None  # an empty element of an Optional field, as DSPy reads it
    return parse_text(text, annotation, path=path)


def _parse_xml(raw: str, path: str) -> Element | None:
    """The element tree of ``raw`` inside a root element, or ``None`` if it is no XML.

    The root wraps the text, so no DOCTYPE (and with it no entity
    declaration) can appear: only XML's own entities are decoded.

    Raises:
        StructuringError: the elements nest deeper than ``MAX_JSON_DEPTH``.
    """
    import xml.etree.ElementTree as ET  # only nested values need it

    try:
        root = ET.fromstring(f"<{_ROOT}>{clean_text(raw)}</{_ROOT}>")
    except ET.ParseError:
        return None
    # Reading and writing elements back recurse: hostile nesting stops here.
    stack = [(root, 0)]
    while stack:
        element, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise StructuringError(
                path, "<elements>", f"XML nested deeper than {MAX_JSON_DEPTH} levels"
            )
        stack.extend((child, depth + 1) for child in element)
    return root


def _group(element: Element) -> dict[str, list[Element]]:
    children: dict[str, list[Element]] = defaultdict(list)
    for child in element:
        key = child.attrib.get("key", child.tag) if child.tag == "entry" else child.tag
        children[key].append(child)
    return children


def _pick(choices: list[Any], element: Element) -> Any:
    """The member of a union to read ``element`` as (DSPy's rule, plus the ``_type`` tag)."""
    chosen = choices[0]
    if len(element):
        structured = [c for c in choices if isinstance(c, dict) and c.get("type") != "string"]
        chosen = structured[0] if structured else chosen
        tag = element.findtext("_type")
        for choice in structured:
            if tag is not None and tag.strip() in choice.get("properties", {}).get("_type", {}).get(
                "enum", ()
            ):
                return choice
    return chosen


def _elements_value(elements: list[Element], schema: Any, defs: Mapping[str, Any]) -> Any:
    """JSON-like data of same-named ``elements`` as ``schema`` describes them (DSPy's reading)."""
    schema = schema if isinstance(schema, dict) else {}
    ref = str(schema.get("$ref", "")).rsplit("/", 1)[-1]
    schema = defs.get(ref, schema)
    first = elements[0]
    if choices := schema.get("anyOf"):
        blank = not len(first) and (first.text or "").strip() in ("", "null", "None")
        if any(c.get("type") == "null" for c in choices) and blank:
            return None
        schema = _pick([c for c in choices if c.get("type") != "null"] or [{}], first)
        ref = str(schema.get("$ref", "")).rsplit("/", 1)[-1]
        schema = defs.get(ref, schema)
    if schema.get("type") == "array":
        if len(elements) == 1 and not len(first):
            text = (first.text or "").strip()
            if not text:
                return []
            if text.startswith("["):
                return text
        if len(elements) == 1 and (items := _group(first).get("item")):
            elements = items
        item_schema = schema.get("items", {})
        return [_elements_value([e], item_schema, defs) for e in elements]
    if schema.get("type") == "string" and len(first):
        return _inner_text(first)
    children = _group(first)
    if not children:
        if schema.get("type") == "object" and not (first.text or "").strip():
            return {}
        values = [(e.text or "").strip() for e in elements]
        return values[0] if len(values) == 1 else values
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", {})
    extra = extra if isinstance(extra, dict) else {}
    return {
        name: _elements_value(items, properties.get(name, extra), defs)
        for name, items in children.items()
    }


def _inner_text(element: Element) -> str:
    """An element's content written back as text (a string field holding markup)."""
    import xml.etree.ElementTree as ET

    return (element.text or "") + "".join(ET.tostring(c, encoding="unicode") for c in element)
