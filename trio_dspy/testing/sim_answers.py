"""What the simulated server answers: reading a request, writing a reply.

A request (OpenAI Chat Completions or Anthropic Messages) is read into a
provider-neutral :class:`SimRequest`. The answer follows what the request
asks for, in this order:

1. tools offered and no tool result in the conversation yet (and
   ``tool_choice`` is not ``"none"``): call the first tool (or the one
   ``tool_choice`` names) with arguments valid for its parameter schema;
2. ``response_format`` ``json_schema`` (or ``json_object`` with an inlined
   ``schema``): a JSON value valid for that schema;
3. a system prompt that says ``Outputs will be a JSON object ... matching
   this JSON schema:``, or ``json_object`` without a schema: a JSON object
   (of the prompt's output fields when it lists them);
4. a system prompt in the ``[[ ## field ## ]]`` format: one section per
   output field, each valid for the type its ``# note:`` states, then
   ``[[ ## completed ## ]]``;
5. a system prompt in the XML format (``<field>\n{field}\n</field>``): one
   element per output field, valid for its ``# note:``; a field the prompt
   lays out as nested elements (``<tags><item>...</item></tags>``) is
   written so, leaves following the scalar its type names (``list[int]``),
   else small numbers (a class's leaves: they read as str, int or float);
6. anything else: a few plausible words.

In 3, 4 and 5, a ReAct step prompt (one listing tools as ``(1) name, whose
description is <desc>...</desc>. It takes arguments {...} in JSON format.``)
gets ``next_tool_args`` valid for the ``next_tool_name`` chosen.

A :class:`SimReply` from a script overrides any part of this.
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from ..adapters.markers import COMPLETED, sections
from ..adapters.xml_tags import elements, escape_text
from ..types import unstructure
from .sim_values import schema_value, words

__all__ = [
    "Answer",
    "SimReply",
    "SimRequest",
    "SimToolCall",
    "build_answer",
    "content_parts",
    "read_request",
]

Dialect = Literal["openai", "anthropic"]


@attrs.frozen
class SimToolCall:
    """A tool call a scripted reply makes: tool ``name`` with ``arguments``."""

    name: str
    arguments: Mapping[str, Any] | str = attrs.field(factory=dict)


@attrs.frozen
class SimReply:
    """A scripted answer; every part is optional.

    * ``text``: the completion text, sent as is;
    * ``outputs``: output field values, rendered in the format the request
      asked for (``[[ ## field ## ]]`` sections or a JSON object); output
      fields the prompt lists but ``outputs`` omits get generated values;
    * ``tool_calls``: tool calls to make instead of answering (``text``, if
      given too, is written beside them, as a model's thought);
    * ``latency``: seconds to wait instead of the configured latency;
    * ``finish_reason``: ``"stop"`` / ``"length"`` / ``"tool_calls"`` override.
    """

    text: str | None = None
    outputs: Mapping[str, Any] | None = None
    tool_calls: Sequence[SimToolCall] = ()
    latency: float | None = None
    finish_reason: str | None = None


@attrs.frozen
class SimRequest:
    """A completion request, whatever its dialect, as the simulator reads it."""

    dialect: Dialect
    model: str
    system: str
    last_user: str
    prompt_chars: int
    tools: tuple[tuple[str, Any], ...]  # (name, parameters schema)
    tool_choice: Any
    has_tool_result: bool
    format_type: str | None  # "json_schema", "json_object" or None
    format_schema: Any
    max_tokens: int | None


@attrs.frozen
class Answer:
    """A provider-neutral answer: text, tool calls ``(id, name, json args)``, why it stopped."""

    text: str
    tool_calls: tuple[tuple[str, str, str], ...] = ()
    finish_reason: Literal["stop", "length", "tool_calls"] = "stop"


# Media parts: never text of the prompt (OpenAI image_url, input_audio and file;
# Anthropic image and document).
_IMAGE_PARTS = frozenset({"image", "image_url", "input_audio", "file", "document"})


def _text(content: Any) -> str:
    """The text of a message's content: a string, or its text parts (images skipped)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", "")) if isinstance(p, Mapping) else str(p)
            for p in content
            if not (isinstance(p, Mapping) and p.get("type") in _IMAGE_PARTS)
        )
    return "" if content is None else str(content)


def content_parts(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every content part of a request body's messages given as a list of parts
    (OpenAI ``text`` / ``image_url`` parts, Anthropic ``text`` / ``image`` / ...
    blocks), in order, each with the ``role`` of its message added."""
    messages = body.get("messages")
    return [
        {"role": m.get("role"), **p}
        for m in (messages if isinstance(messages, list) else ())
        if isinstance(m, Mapping) and isinstance(m.get("content"), list)
        for p in m["content"]
        if isinstance(p, Mapping)
    ]


def read_request(body: Mapping[str, Any], dialect: Dialect) -> SimRequest:
    """Read a Chat Completions (``openai``) or Messages (``anthropic``) body.

    Raises:
        ValueError: ``messages`` is missing or not a list of message objects.
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, Mapping) for m in messages):
        raise ValueError("`messages` must be a list of message objects")
    system_parts: list[str] = [] if dialect == "openai" else [_text(body.get("system"))]
    last_user, chars, has_tool_result = "", 0, False
    for m in messages:
        role, content = m.get("role"), m.get("content")
        text = _text(content)
        chars += len(text)
        if role in ("system", "developer"):
            system_parts.append(text)
        elif role == "tool":
            has_tool_result = True
        elif role == "user":
            if isinstance(content, list) and any(
                isinstance(p, Mapping) and p.get("type") == "tool_result" for p in content
            ):
                has_tool_result = True
            else:
                last_user = text
    system = "\n\n".join(p for p in system_parts if p)
    if dialect == "anthropic":
        chars += len(system)
        tools = tuple((t.get("name", ""), t.get("input_schema", {})) for t in body.get("tools", ()))
        fmt_type, fmt_schema = None, None
    else:
        tools = tuple(
            (t["function"].get("name", ""), t["function"].get("parameters", {}))
            for t in body.get("tools") or ()
            if isinstance(t, Mapping) and isinstance(t.get("function"), Mapping)
        )
        fmt = body.get("response_format") or {}
        fmt_type = fmt.get("type") if fmt.get("type") in ("json_schema", "json_object") else None
        fmt_schema = (fmt.get("json_schema") or {}).get("schema") or fmt.get("schema")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    return SimRequest(
        dialect=dialect,
        model=str(body.get("model", "sim-model")),
        system=system,
        last_user=last_user,
        prompt_chars=chars,
        tools=tools,
        tool_choice=body.get("tool_choice"),
        has_tool_result=has_tool_result,
        format_type=fmt_type,
        format_schema=fmt_schema,
        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
    )


# ------------------------------------------------------------- prompt reading
@attrs.frozen
class _Field:
    name: str
    kind: str  # str, int, float, bool, choice, schema
    choices: tuple[str, ...] = ()
    schema: Any = None


@attrs.frozen
class _Plan:
    fields: tuple[_Field, ...] = ()
    json_schema: Any = None
    # A ReAct step prompt's tools: name -> the JSON schema of its arguments.
    tools: Mapping[str, Any] = attrs.field(factory=dict)
    # An XML prompt: its output elements; name -> the nested layout of a field
    # written as nested elements.
    xml: bool = False
    nested: Mapping[str, str] = attrs.field(factory=dict)


_OUTPUTS = "Your output fields are:\n"
_JSON_INTRO = "Outputs will be a JSON object with the following fields, matching this JSON schema:"
# DSPy's own prompts end a field line with ":" even without a description.
_FIELD_LINE = re.compile(r"\d+\. `(\w+)` \((.*?)\)(?=:|$)")
# How a ReAct step prompt (DSPy's and ours) lists a tool and its arguments.
_TOOL_LINE = re.compile(
    r"^\s*\(\d+\) (\S+?), whose description is <desc>.*?</desc>\. "
    r"It takes arguments (.*?)(?: in JSON format)?\.$",
    re.MULTILINE,
)
_NOTE = re.compile(r"^\{(\w+)\}\s+# note: the value you produce (.+)$", re.MULTILINE)
# An element of an XML prompt's structure: a placeholder, or a nested layout.
_XML_ELEMENT = re.compile(r"^<(\w+)>(?:\n\{\1\}|(<.*>|\.\.\.)</\1>$)", re.MULTILINE)
_SCALARS = re.compile(r"\b(int|float|bool|str)\b")


@functools.lru_cache(maxsize=256)
def _plan(system: str) -> _Plan:
    """What the system prompt asks for (cached: the same prompt repeats a lot)."""
    schema = None
    at = system.find(_JSON_INTRO)
    if at >= 0:
        rest = system[at + len(_JSON_INTRO) :].lstrip()
        try:
            schema, _ = json.JSONDecoder().raw_decode(rest)
        except ValueError:
            schema = None
    at = system.find(_OUTPUTS)
    if at < 0:
        return _Plan(json_schema=schema)
    tools = {m.group(1): _arguments_schema(m.group(2)) for m in _TOOL_LINE.finditer(system)}
    types: dict[str, str] = {}
    for line in system[at + len(_OUTPUTS) :].splitlines():
        if not line.strip():
            break  # the list ends at a blank line
        m = _FIELD_LINE.match(line)
        if m is not None:  # else a type's description (`Type description of Code: ...`)
            types[m.group(1)] = m.group(2)
    notes = {m.group(1): m.group(2) for m in _NOTE.finditer(system)}
    fields = tuple(_field(name, types[name], notes.get(name, "")) for name in types)
    xml = [m for m in _XML_ELEMENT.finditer(system) if m.group(1) in types or not m.group(2)]
    nested = {m.group(1): m.group(0) for m in xml if m.group(2)}
    return _Plan(
        fields=fields,
        json_schema=schema,
        tools=tools,
        xml=bool(xml) and "[[ ## " not in system,
        nested={n: _leaf_kind(types[n]) + layout for n, layout in nested.items()},
    )


def _leaf_kind(type_name: str) -> str:
    """``int:``, ``float:``, ``bool:``, ``str:``, ``dict:`` or ``number:`` (the
    leaves of a nested field, from the last scalar its type names), prefixed
    to its layout."""
    if type_name.startswith(("dict", "Optional[dict")):
        return "dict:"
    scalars = _SCALARS.findall(type_name)
    # A class's leaves are of types the prompt does not name: a small number
    # reads as a str, an int and a float alike.
    return f"{scalars[-1] if scalars else 'number'}:"


def _nested_xml(spec: str, rng: random.Random) -> str:
    """A value laid out as the nested ``<tag><item>...</item></tag>`` ``spec`` shows."""
    import xml.etree.ElementTree as ET

    kind, _, layout = spec.partition(":")
    leaf = _Field("leaf", "str" if kind == "dict" else kind)

    def fill(element: ET.Element) -> str:
        children = list(element)
        if not children:
            if kind == "dict" and element is root:
                pairs = "".join(f"<key{i}>{rng.randint(0, 9)}</key{i}>" for i in range(2))
                return f"<{element.tag}>{pairs}</{element.tag}>"
            value = rng.randint(1, 9) if kind == "number" else _field_value(leaf, rng)
            text = _chat_value(value)
            return f"<{element.tag}>{escape_text(text)}</{element.tag}>"
        inner: list[str] = []
        for child in children:
            repeat = rng.randint(1, 3) if child.tag == "item" else 1
            inner.extend(fill(child) for _ in range(repeat))
        return f"<{element.tag}>{''.join(inner)}</{element.tag}>"

    root = ET.fromstring(layout)
    return fill(root)


def _arguments_schema(properties: str) -> Any:
    """The object schema of a tool's arguments from the properties a prompt lists."""
    try:
        props = json.loads(properties)
    except ValueError:
        return {"type": "object"}
    if not isinstance(props, dict):
        return {"type": "object"}
    return {"type": "object", "properties": props, "required": list(props)}


def _fill_tool_args(
    plan: _Plan, values: dict[str, Any], given: Mapping[str, Any], rng: random.Random
) -> None:
    """Give ``next_tool_args`` arguments valid for the ``next_tool_name`` chosen.

    A ReAct step in text mode picks a tool and its arguments in two fields;
    generated independently the arguments would be ``{}`` and fail every
    tool's validation, so they follow the chosen tool's schema, as a native
    tool call's do.
    """
    schema = plan.tools.get(values.get("next_tool_name"))  # type: ignore[arg-type]
    if schema is None or "next_tool_args" not in values or "next_tool_args" in given:
        return
    try:
        values["next_tool_args"] = schema_value(schema, rng)
    except ValueError:  # a schema the prompt cut short ($ref into unlisted $defs)
        values["next_tool_args"] = {}


def _field(name: str, type_name: str, note: str) -> _Field:
    for prefix in ("must exactly match (no extra characters) one of: ", "must be one of: "):
        if note.startswith(prefix):
            return _Field(name, "choice", tuple(note[len(prefix) :].split("; ")))
    if note.startswith("must adhere to the JSON schema: "):
        try:
            return _Field(name, "schema", schema=json.loads(note.split(": ", 1)[1]))
        except ValueError:
            return _Field(name, "str")
    if note == "must be True or False" or type_name == "bool":
        return _Field(name, "bool")
    if note == "must be a single float value" or type_name == "float":
        return _Field(name, "float")
    if note == "must be a single int value" or type_name == "int":
        return _Field(name, "int")
    return _Field(name, "str")


def _field_value(f: _Field, rng: random.Random) -> Any:
    if f.kind == "choice":
        return rng.choice(f.choices)
    if f.kind == "schema":
        return schema_value(f.schema, rng)
    if f.kind == "bool":
        return rng.random() < 0.5
    if f.kind == "float":
        return round(rng.uniform(0, 1), 2)
    if f.kind == "int":
        return rng.randint(0, 100)
    return words(rng, 3, 9)


def _chat_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _xml_content(
    plan: _Plan, values: Mapping[str, Any], given: Mapping[str, Any], rng: random.Random
) -> str:
    """The elements of an XML answer: nested layouts generated, the rest as text or JSON."""
    parts = []
    for name, value in values.items():
        spec = plan.nested.get(name)
        if spec is not None and name not in given:
            parts.append(_nested_xml(spec, rng))
        else:
            parts.append(elements({name: _chat_value(value)}))
    return "\n\n".join(parts)


# ----------------------------------------------------------------- answering
VARIANTS = 64  # generated answers per prompt and format, cached


def build_answer(req: SimRequest, key: int, reply: SimReply | None = None) -> Answer:
    """The answer to ``req``: scripted parts from ``reply``, the rest generated.

    ``key`` (a hash of the request body, plus the server seed shifted left by
    32 bits) makes the answer deterministic. Generated content is one of
    :data:`VARIANTS` cached variants per prompt and format, so a prompt that
    repeats costs almost nothing to answer.

    Raises:
        ValueError: a schema in the request cannot be satisfied.
    """
    reply = reply or SimReply()
    if reply.tool_calls:
        rng = random.Random(key)
        calls = tuple(_tool_call(c.name, c.arguments, rng) for c in reply.tool_calls)
        # ``text`` with calls: the words a model writes beside them (its thought).
        return Answer(reply.text or "", calls, _finish(reply.finish_reason, "tool_calls"))
    if reply.text is None and reply.outputs is None:
        tool = _tool_to_call(req)
        if tool is not None:
            rng = random.Random(key)
            args = schema_value(tool[1] or {"type": "object"}, rng)
            call = _tool_call(tool[0], args, rng)
            return Answer("", (call,), _finish(reply.finish_reason, "tool_calls"))
    fmt = req.format_type
    if reply.text is not None:
        text = reply.text
    elif reply.outputs:
        text = _content(req.system, fmt, req.format_schema, random.Random(key), reply.outputs)
    else:
        variant = (key >> 32) * VARIANTS + (key & 0xFFFFFFFF) % VARIANTS
        schema_key = None if req.format_schema is None else json.dumps(req.format_schema)
        text = _cached_content(req.system, fmt if fmt else None, schema_key, variant)
    return Answer(text, (), _finish(reply.finish_reason, "stop"))


@functools.lru_cache(maxsize=4096)
def _cached_content(system: str, fmt: str | None, schema_key: str | None, variant: int) -> str:
    schema = None if schema_key is None else json.loads(schema_key)
    return _content(system, fmt, schema, random.Random(variant), {})


def _finish(override: str | None, default: str) -> Any:
    return override if override in ("stop", "length", "tool_calls") else default


def _tool_call(name: str, args: Any, rng: random.Random) -> tuple[str, str, str]:
    text = (
        args
        if isinstance(args, str)
        else json.dumps(unstructure(args, tag_all=True), ensure_ascii=False)
    )
    return (f"call_{rng.getrandbits(64):016x}", name, text)


def _tool_to_call(req: SimRequest) -> tuple[str, Any] | None:
    if not req.tools or req.has_tool_result:
        return None
    choice = req.tool_choice
    if choice == "none" or (isinstance(choice, Mapping) and choice.get("type") == "none"):
        return None
    if isinstance(choice, Mapping):
        wanted = choice.get("name") or (choice.get("function") or {}).get("name")
        for tool in req.tools:
            if tool[0] == wanted:
                return tool
    return req.tools[0]


def _content(
    system: str, fmt: str | None, fmt_schema: Any, rng: random.Random, given: Mapping[str, Any]
) -> str:
    plan = _plan(system) if system else _Plan()
    schema = fmt_schema if fmt else None
    if schema is None and (fmt or plan.json_schema is not None):
        schema = plan.json_schema
    if schema is not None or fmt:
        if schema is not None:
            value = schema_value(schema, rng)
        elif plan.fields:
            value = {f.name: _field_value(f, rng) for f in plan.fields}
        else:
            value = {} if given else {"response": words(rng, 3, 9)}
        if isinstance(value, dict):
            value.update(unstructure(dict(given), tag_all=True))
            _fill_tool_args(plan, value, given, rng)
        return json.dumps(value, ensure_ascii=False)
    if plan.fields or given:
        values = {f.name: _field_value(f, rng) for f in plan.fields}
        values.update(unstructure(dict(given), tag_all=True))
        _fill_tool_args(plan, values, given, rng)
        if plan.xml:
            return _xml_content(plan, values, given, rng)
        body = sections({k: _chat_value(v) for k, v in values.items()})
        return f"{body}\n\n{COMPLETED}"
    return words(rng, 4, 12).capitalize() + "."
