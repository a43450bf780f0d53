"""What every request of one adapter for one signature shares, worked out once.

A predictor called again and again sends the same system message and ends
its user message with the same requirements. A :class:`Plan` holds them for
a signature as it is now. :meth:`Adapter.plan <trio_dspy.adapters.base.Adapter.plan>`
keeps one per signature and builds it again once :meth:`Plan.fits` says the
signature was changed in place (``QA.instructions = ...``, a field replaced).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import attrs

from ..messages import Message
from ..signature import Field, Signature
from .markers import field_header
from .native import reasoning_fields
from .native_tools import tool_fields

__all__ = ["Plan", "outputs_in_text", "str_input_headers", "text_inputs"]


@attrs.frozen(eq=False)
class Plan:
    """One signature's prompt texts, for one adapter.

    Attributes:
        signature: the signature it was built for.
        system: the system message.
        requirements: the sentence that ends the user message (how to answer).
        headers: when every input is ``str`` and the adapter shows a text
            value as its section's header, a newline and the text: each
            input's name and header with that newline; else ``None``.
        tail: what follows the input sections in the user message.
    """

    signature: type[Signature]
    system: Message
    requirements: str
    headers: tuple[tuple[str, str], ...] | None
    tail: str
    # What the texts were made of: the signature as it was then.
    _instructions: str = attrs.field(alias="_instructions")
    _inputs: tuple[tuple[str, Field], ...] = attrs.field(alias="_inputs")
    _outputs: tuple[tuple[str, Field], ...] = attrs.field(alias="_outputs")

    @classmethod
    def build(
        cls,
        signature: type[Signature],
        system: str,
        requirements: str,
        headers: tuple[tuple[str, str], ...] | None = None,
    ) -> Plan:
        """The plan of ``signature`` as it is now, with the adapter's texts for it."""
        return cls(
            signature,
            Message("system", system),
            requirements,
            headers,
            f"\n\n{requirements}" if requirements else "",
            _instructions=signature.instructions,
            _inputs=tuple(signature.input_fields.items()),
            _outputs=tuple(signature.output_fields.items()),
        )

    def fits(self, signature: Any) -> bool:
        """Whether ``signature`` is still what this plan was built from: the same
        class, instructions and fields (compared by value, in order)."""
        return (
            signature is self.signature
            and signature.instructions == self._instructions
            and tuple(signature.input_fields.items()) == self._inputs
            and tuple(signature.output_fields.items()) == self._outputs
        )


def text_inputs(plan: Plan, inputs: Mapping[str, Any]) -> str | None:
    """The user message's text for ``inputs`` from ``plan``'s headers, when
    every input is given as a ``str`` (else ``None``: the adapter formats them)."""
    if plan.headers is None:
        return None
    parts = []
    for name, header in plan.headers:
        value = inputs.get(name)
        if type(value) is not str:
            return None
        parts.append(header + value)
    return "\n\n".join(parts) + plan.tail


def str_input_headers(signature: type[Signature]) -> tuple[tuple[str, str], ...] | None:
    """Each input's name and ``[[ ## name ## ]]`` header line, when every input
    of ``signature`` is a ``str`` (:attr:`Plan.headers`), else ``None``."""
    if any(f.annotation is not str for f in signature.input_fields.values()):
        return None
    return tuple((n, f"{field_header(n)}\n") for n in signature.input_fields)


@functools.lru_cache(maxsize=256)
def outputs_in_text(signature: type[Signature]) -> bool:
    """Whether the answer's text is where every output of ``signature`` comes from.

    False for a ``td.Reasoning`` output (a model's native reasoning may fill
    it) and a ``td.ToolCalls`` output (native tool calls may fill it): their
    requests and answers take the longer way through
    :func:`~trio_dspy.adapters.native.prompt_signature` and
    :func:`~trio_dspy.adapters.native_tools.tool_plan`.
    """
    return not reasoning_fields(signature) and tool_fields(signature) is None
