"""What every request of one adapter for one signature shares, worked out once.

A predictor called again and again sends the same system message, ends its
user message with the same requirements, and asks the same questions of its
signature: has it a ``td.History`` input, ``td.Reasoning`` outputs, a
``td.ToolCalls`` output? A :class:`Plan` holds the answers for a signature
as it is now. :meth:`Adapter.plan <trio_dspy.adapters.base.Adapter.plan>`
keeps one per signature and builds it again once :meth:`Plan.fits` says the
signature was changed in place (``QA.instructions = ...``, a field replaced).
"""

from __future__ import annotations

from typing import Any

import attrs

from ..messages import Message
from ..signature import Field, Signature
from .inputs import history_field
from .native import reasoning_fields
from .native_tools import tool_fields

__all__ = ["Plan"]


@attrs.frozen(eq=False)
class Plan:
    """One signature's prompt texts and traits, for one adapter.

    Attributes:
        signature: the signature it was built for.
        system: the system message.
        requirements: the sentence that ends the user message (how to answer).
        plain: the signature has no ``td.History`` input, no ``td.Reasoning``
            output and no ``td.ToolCalls`` output: a request is its prompt
            alone, and the answer's text holds every output.
        history: the name of the ``td.History`` input, if any.
    """

    signature: type[Signature]
    system: Message
    requirements: str
    plain: bool
    history: str | None
    # What the texts were made of: the signature as it was then.
    _instructions: str = attrs.field(alias="_instructions")
    _inputs: tuple[tuple[str, Field], ...] = attrs.field(alias="_inputs")
    _outputs: tuple[tuple[str, Field], ...] = attrs.field(alias="_outputs")

    @classmethod
    def build(cls, signature: type[Signature], system: str, requirements: str) -> Plan:
        """The plan of ``signature`` as it is now, with the adapter's two texts for it."""
        history = history_field(signature)
        return cls(
            signature,
            Message("system", system),
            requirements,
            history is None and not reasoning_fields(signature) and tool_fields(signature) is None,
            history,
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
