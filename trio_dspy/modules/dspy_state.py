"""Reading the JSON that DSPy's ``program.save("x.json")`` writes.

DSPy saves, per predictor, its demos and its signature's instructions and
fields (``{"prefix", "description"}`` in order: inputs, then outputs), keyed
by the predictor's name, with a ``metadata`` entry beside them; a program
that is itself a single ``Predict`` is saved as that predictor's state alone.
:func:`dspy_state` turns such a file into the state :meth:`Module.load_state`
takes, after checking that the predictors and their fields match.

Names: DSPy's ``ChainOfThought`` holds a ``Predict`` under ``predict``, so its
state is saved as ``"cot.predict"`` (``"predict"`` for a program that is one
``ChainOfThought``), while here a ``ChainOfThought`` is the predictor itself:
``"cot.predict"`` is read as ``"cot"`` and ``"predict"`` as the program
itself. A DSPy field without a description is saved with the placeholder
``"${name}"``, which names the field; it is read as no description. The
saved ``lm`` and ``metadata`` are not read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import TrioDSPyError

if TYPE_CHECKING:
    from ..signature import Signature
    from .module import Predictor

__all__ = ["dspy_state", "is_dspy_save"]

_PLACEHOLDER = re.compile(r"^\$\{(\w+)\}$")
# DSPy's default prefix: the name's words capitalised, then a colon ("Next Tool Name:").
_DEFAULT_PREFIX = re.compile(r"^([A-Za-z0-9]+(?: [A-Za-z0-9]+)*):$")


def _is_predictor_state(value: Any) -> bool:
    return isinstance(value, Mapping) and "signature" in value and "demos" in value


def is_dspy_save(payload: Any) -> bool:
    """Whether ``payload`` looks like a file DSPy's ``save`` wrote (JSON, not pickled)."""
    if not isinstance(payload, Mapping) or "format" in payload:
        return False
    if _is_predictor_state(payload):
        return True
    entries = [v for k, v in payload.items() if k != "metadata"]
    return bool(entries) and all(_is_predictor_state(v) for v in entries)


def dspy_state(
    payload: Mapping[str, Any], predictors: Mapping[str, Predictor], source: str
) -> dict[str, Any]:
    """The state of each of ``predictors`` (by name) in the DSPy save ``payload``.

    Raises:
        TrioDSPyError: a DSPy predictor has no counterpart among ``predictors``
            (or the other way round), a predictor's fields differ in number or
            name from its signature's, or an entry is malformed; the message
            names the predictor and the field, and ``source`` (the file).
    """
    entries = (
        {"self": payload}
        if _is_predictor_state(payload)
        else {k: v for k, v in payload.items() if k != "metadata"}
    )
    state: dict[str, Any] = {}
    for saved_name, entry in entries.items():
        name = _local_name(saved_name, predictors)
        if name is None or name in state:
            raise TrioDSPyError(
                f"{source}: DSPy predictor {saved_name!r} has no counterpart in this program, "
                f"whose predictors are {', '.join(predictors)}; load the file into the "
                "program that saved it"
            )
        state[name] = _predictor_state(saved_name, entry, predictors[name].signature, source)
    missing = [n for n in predictors if n not in state]
    if missing:
        raise TrioDSPyError(
            f"{source}: the DSPy file has no state for predictor(s) {', '.join(missing)}"
        )
    return state


def _local_name(saved: str, predictors: Mapping[str, Predictor]) -> str | None:
    candidates = [saved, saved.removesuffix(".predict")]
    if saved == "predict":
        candidates.append("self")
    return next((c for c in candidates if c in predictors), None)


def _predictor_state(
    saved_name: str, entry: Any, signature: type[Signature], source: str
) -> dict[str, Any]:
    where = f"{source}: DSPy predictor {saved_name!r}"
    sig = entry.get("signature") if isinstance(entry, Mapping) else None
    fields = sig.get("fields") if isinstance(sig, Mapping) else None
    if not isinstance(fields, list) or not isinstance(entry.get("demos"), list):
        raise TrioDSPyError(f"{where} is malformed: expected 'demos' and 'signature.fields' lists")
    names = list(signature.fields)
    if len(fields) != len(names):
        raise TrioDSPyError(
            f"{where} has {len(fields)} fields, {signature.__name__} has {len(names)} "
            f"({', '.join(names)}): it was saved from another signature"
        )
    loaded: dict[str, dict[str, str]] = {}
    for position, (name, saved) in enumerate(zip(names, fields, strict=True), start=1):
        if not isinstance(saved, Mapping):
            raise TrioDSPyError(f"{where}: field {position} is not an object: {saved!r}")
        desc, prefix = str(saved.get("description") or ""), str(saved.get("prefix") or "")
        placeholder = _PLACEHOLDER.match(desc)
        default = _DEFAULT_PREFIX.match(prefix)
        said = (
            placeholder.group(1)
            if placeholder
            else default.group(1).lower().replace(" ", "_")
            if default
            else None
        )
        if said is not None and said != name:
            raise TrioDSPyError(
                f"{where}: field {position} is {said!r} there and {name!r} in "
                f"{signature.__name__}: it was saved from another signature"
            )
        loaded[name] = {"desc": "" if placeholder else desc, "prefix": prefix}
    instructions = entry["signature"].get("instructions")
    return {
        **({"instructions": instructions} if isinstance(instructions, str) else {}),
        "fields": loaded,
        "demos": entry["demos"],
    }
