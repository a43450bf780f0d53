"""``td.Reasoning`` outputs answered by a model's native reasoning, as DSPy's adapters do.

A call whose parameters turn a model's own reasoning on (``reasoning_effort``,
or Anthropic's ``thinking``) does not ask for its ``td.Reasoning`` outputs in
the prompt (:func:`prompt_signature`): the model returns its reasoning
beside the answer (:attr:`~trio_dspy.messages.LMResponse.reasoning`), and
:func:`parse_with_reasoning` puts it in those fields. A response that
carries reasoning fills them whatever the prompt asked; one that does not
must hold them in its text (DSPy leaves them ``None`` then; here the parse
error re-asks for them, so a ``td.Reasoning`` output is never missing).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from ..messages import LMResponse
from ..signature import Signature
from ..types import Reasoning
from .inputs import without_fields

__all__ = ["parse_with_reasoning", "prompt_signature", "reasoning_fields"]

# The parameters that turn a model's native reasoning on.
_NATIVE_PARAMS = ("reasoning_effort", "thinking")


@functools.lru_cache(maxsize=256)
def reasoning_fields(signature: type[Signature]) -> tuple[str, ...]:
    """The names of ``signature``'s outputs typed ``td.Reasoning``."""
    return tuple(n for n, f in signature.output_fields.items() if f.annotation is Reasoning)


def _without_reasoning(signature: type[Signature]) -> type[Signature]:
    return without_fields(signature, frozenset(reasoning_fields(signature)))


def prompt_signature(signature: type[Signature], params: Mapping[str, Any]) -> type[Signature]:
    """``signature`` as the prompt asks for it: without its ``td.Reasoning``
    outputs when ``params`` turn native reasoning on (and another output is left)."""
    names = reasoning_fields(signature)
    native = any(params.get(p) is not None for p in _NATIVE_PARAMS)
    if not names or not native or len(names) == len(signature.output_fields):
        return signature
    return _without_reasoning(signature)


def parse_with_reasoning(
    parse: Callable[[type[Signature], str], dict[str, Any]],
    signature: type[Signature],
    response: LMResponse,
) -> dict[str, Any]:
    """``parse(signature, response.text)``, with ``td.Reasoning`` outputs taken
    from the response's native reasoning when it has some.

    Raises:
        AdapterParseError: the other outputs do not parse.
    """
    names = reasoning_fields(signature)
    if not names or len(names) == len(signature.output_fields):
        values = parse(signature, response.text)
        if names and response.reasoning:
            values.update(dict.fromkeys(names, Reasoning(response.reasoning)))
        return values
    if not response.reasoning:
        # Without native reasoning the text must hold it; a prompt that left it
        # out gets the parse error, and the re-ask asks for it in the text.
        return parse(signature, response.text)
    values = parse(_without_reasoning(signature), response.text)
    reasoning = Reasoning(response.reasoning)
    return {n: reasoning if n in names else values[n] for n in signature.output_fields}
