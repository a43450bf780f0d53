"""Checking the inputs of a call against its signature, before anything is sent."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from ..signature import Signature
from .call import not_awaited

__all__ = ["check_inputs"]


def check_inputs(owner: object, signature: type[Signature], inputs: Mapping[str, Any]) -> None:
    """Raise ``TypeError`` naming unknown and missing input fields of ``signature``.

    An unknown name close to a missing one is suggested as its spelling
    (``got unknown input field reqest (did you mean request?)``). A value
    that is a call left un-awaited (``draft=self.draft(...)``) is named too:
    sent on, it would fail far away as "not JSON serializable".
    """
    for name, value in inputs.items():
        if type(value) is str:  # text, the usual input, is no call
            continue
        error = not_awaited(value, f"{_where(owner, signature)} input field {name!r}")
        if error is not None:
            raise error
    expected = signature.input_fields
    if inputs.keys() == expected.keys():
        return
    unknown = [n for n in inputs if n not in expected]
    missing = [n for n in expected if n not in inputs]
    parts = []
    if unknown:
        parts.append(
            "got unknown input field(s) "
            + ", ".join(_with_suggestion(n, missing or list(expected)) for n in unknown)
        )
    if missing:
        parts.append(f"missing required input field(s): {', '.join(missing)}")
    raise TypeError(
        f"{_where(owner, signature)} {'; '.join(parts)}; inputs are {', '.join(expected)}"
    )


def _where(owner: object, signature: type[Signature]) -> str:
    """How an error names the call: ``Predict(QA)``."""
    return f"{type(owner).__name__}({signature.__name__})"


def _with_suggestion(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    return f"{name} (did you mean {close[0]}?)" if close else name
