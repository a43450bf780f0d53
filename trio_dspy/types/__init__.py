"""Python type hints as JSON schema, and typed values from model output.

Every supported field type goes through this package, one job per module:

* :mod:`~trio_dspy.types.support`: what kind of type a hint is, whether it is
  supported (:func:`check_supported`) and its readable name (:func:`type_name`);
* :mod:`~trio_dspy.types.schema`: :func:`json_schema` turns a type hint into
  the JSON schema sent to models (in prompts, ``response_format`` and tool
  definitions);
* :mod:`~trio_dspy.types.convert`: :func:`structure` turns JSON-like data into
  the typed value, with a cattrs converter tuned for what models actually
  write (``"3"`` for ``3``, ``"Small"`` for ``Size.small``, read by the hooks
  of :mod:`~trio_dspy.types.scalars`); a failure raises
  :class:`~trio_dspy.errors.StructuringError` naming the path and the value
  (``action.size: 'huge' is not one of small, medium, large``);
* :mod:`~trio_dspy.types.unstructure`: :func:`unstructure` turns typed values
  back into JSON-like data;
* :mod:`~trio_dspy.types.text`: :func:`parse_text` does text -> JSON -> typed
  value for one field.

Supported: ``str``, ``int``, ``float``, ``bool``, ``None``, ``Any``, enums,
``Literal``, ``list``/``tuple``/``dict`` of supported types, ``Optional`` and
unions, attrs classes and dataclasses (nested), and pydantic ``BaseModel``
classes (described and validated by pydantic itself, in
:mod:`~trio_dspy.types.pydantic_models`, imported only when a type is one).
Inputs may also be :class:`~trio_dspy.types.image.Image`,
:class:`~trio_dspy.types.audio.Audio` and :class:`~trio_dspy.types.file.File`
(alone, in a list, or ``Optional``) and :class:`~trio_dspy.types.history.History`
(:func:`check_field`). :class:`~trio_dspy.types.code.Code` and
:class:`~trio_dspy.types.reasoning.Reasoning` (and ``td.ToolCalls``) describe
themselves (:mod:`~trio_dspy.types.custom`). A value whose declared type is
a union of attrs classes (or dataclasses) is a JSON object tagged
``"_type": "<ClassName>"``: :func:`json_schema` requires the tag,
:func:`unstructure` writes it, and :func:`structure` reads by it (falling back
to the fields present when a model leaves it out).
"""

from __future__ import annotations

from .audio import Audio
from .code import Code
from .convert import converter, structure
from .file import File
from .history import History
from .image import Image
from .reasoning import Reasoning
from .schema import json_schema
from .support import (
    TAG,
    accepts_str,
    check_field,
    check_supported,
    image_annotation,
    is_pydantic_model,
    is_record,
    type_name,
)
from .text import MAX_JSON_DEPTH, find_json, loads_json, parse_text, strip_code_fences
from .unstructure import unstructure

__all__ = [
    "MAX_JSON_DEPTH",
    "TAG",
    "Audio",
    "Code",
    "File",
    "History",
    "Image",
    "Reasoning",
    "accepts_str",
    "check_field",
    "check_supported",
    "converter",
    "find_json",
    "image_annotation",
    "is_pydantic_model",
    "is_record",
    "json_schema",
    "loads_json",
    "parse_text",
    "strip_code_fences",
    "structure",
    "type_name",
    "unstructure",
]
