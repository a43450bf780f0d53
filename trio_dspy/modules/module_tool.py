"""A module as a tool: ``td.Tool(agent)`` lets another agent delegate to it.

The tool's parameters are the module's signature's input fields (their types
and descriptions in the JSON schema the model sees); a call runs the module
(``await module(**arguments)``, so its span is the child of the caller's
``execute_tool`` span and its LM calls count in the caller's usage) and
returns the prediction's output fields as a dict, which an agent shows the
model as JSON. The trajectory of a ReAct specialist is not part of it.

A module without a ``signature`` attribute is described by its ``forward``
method's parameters instead, and returns its prediction's fields whole.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .module import Module

__all__ = ["ModuleTool", "module_arguments"]


class ModuleTool:
    """The function a module tool calls: runs the module, returns its output fields."""

    def __init__(self, module: Module) -> None:
        self.module = module
        signature = getattr(module, "signature", None)
        outputs = getattr(signature, "output_fields", None)
        self._outputs: tuple[str, ...] | None = (
            tuple(outputs) if isinstance(outputs, Mapping) else None
        )

    async def __call__(self, **arguments: Any) -> Any:
        prediction = await self.module(**arguments)
        fields = prediction.to_dict() if callable(getattr(prediction, "to_dict", None)) else None
        if not isinstance(fields, dict):
            return prediction
        if self._outputs is None:
            return fields
        return {name: fields[name] for name in self._outputs if name in fields}


def module_arguments(module: Module) -> tuple[list[tuple[str, Any, str]], str] | None:
    """``(name, type, description)`` of ``module``'s input fields, and its instructions.

    ``None`` when the module has no signature (its ``forward`` describes it then).
    """
    signature = getattr(module, "signature", None)
    fields = getattr(signature, "input_fields", None)
    if not isinstance(fields, Mapping):
        return None
    args = [(name, field.annotation, field.desc) for name, field in fields.items()]
    instructions = str(getattr(signature, "instructions", "") or "")
    return args, " ".join(instructions.split()) or (inspect.getdoc(type(module)) or "")
