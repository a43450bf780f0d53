"""A simulated small model: lost in free text, obedient under ``response_format``.

Models of a few hundred million parameters rarely keep to the
``[[ ## field ## ]]`` sections: they ramble until the token limit. Asked for
``response_format`` (``json_schema``, or ``json_object`` with the schema, as
llama.cpp's server takes it) their decoding is constrained and the answer
parses. :func:`small_model_script` plays that model on the simulated server,
so the structured re-ask can be tested without one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .sim_answers import SimReply
from .sim_config import Script

__all__ = ["RAMBLE", "small_model_script"]

RAMBLE = (
    "Okay, let me think about this customer. The customer wants a drink, and "
    "the drink should be a good one, and the size of the drink matters because "
)


def small_model_script(ramble: str = RAMBLE) -> Script:
    """A :class:`~trio_dspy.testing.SimConfig` ``script`` playing a small model.

    A request without ``response_format`` is answered with ``ramble`` cut at
    the token limit (``finish_reason`` ``"length"``, no sections); a request
    with one gets the server's usual schema-valid JSON. Combine with
    ``supports_json_schema=False`` for a server that takes only
    ``json_object``, as llama.cpp's does.
    """

    def script(body: Mapping[str, Any]) -> SimReply | None:
        fmt = body.get("response_format")
        if isinstance(fmt, Mapping) and fmt.get("type") in ("json_schema", "json_object"):
            return None  # constrained decoding: the generated, schema-valid answer
        return SimReply(text=ramble, finish_reason="length")

    return script
