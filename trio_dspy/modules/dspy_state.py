"""Reading the JSON that DSPy's ``program.save("x.json")`` writes.

DSPy saves, per predictor, its demos and its signature's instructions and
fields (``{"prefix", "description"}`` in order: inputs, then outputs), keyed
by the predictor's name, with a ``metadata`` entry beside them; a program
that is itself a single ``Predict`` is saved as that predictor's state alone.
:func:`dspy_state` turns such a file into the state :meth:`Module.load_state`
takes, after checking that the predictors and their fields match.

Names: DSPy's ``ChainOfThought`` holds a ``Predict`` under ``predict``, so its
state is saved as ``"cot.predict"`` (``"predict"`` for a program that is one
``ChainOfThought``); here a ``ChainOfThought`` is the predictor itself, and
:meth:`~trio_dspy.Module.named_predictors` names it by the same path. A
plain name (``"cot"``, or ``"self"`` for ``"predict"``) is still matched.
A DSPy field without a description is saved with the placeholder
``"${name}"``, which names the field; it is read as no description. The
saved ``lm``, ``traces``, ``train`` and ``metadata`` are not read, but a value
of a type DSPy never writes there is refused like any other
(:mod:`~trio_dspy.modules.saved_schema` has the shapes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import TrioDSPyError

if TYPE_CHECKING:
    from ..signature import Signature
    from .predictor import Predictor
    from .saved_schema import DSPyPredictor

__all__ = ["dspy_state", "is_dspy_save"]

_PLACEHOLDER = re.compile(r"^\$\{(\w+)\}$")
# DSPy's default prefix: the name's words capitalised, then a colon ("Next Tool Name:").
_DEFAULT_PREFIX = re.compile(r"^([A-Za-z0-9]+(?: [A-Za-z0-9]+)*):$")


def _is_predictor_state(value: Any) -> bool:
    return isinstance(value, Mapping) and "signature" in value and "demos" in value


def is_dspy_save(payload: Any) -> bool:
    """Whether ``payload`` looks like a file DSPy's ``save`` wrote (JSON, not pickled).

    One predictor's state among its entries is enough: the others are then
    read as predictors too, so that a broken one is refused by its name.
    """
    if not isinstance(payload, Mapping) or "format" in payload:
        return False
    if _is_predictor_state(payload):
        return True
    return any(_is_predictor_state(v) for k, v in payload.items() if k != "metadata")


def dspy_state(
    payload: Mapping[str, Any], predictors: Mapping[str, Predictor], source: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """The state of each of ``predictors`` (by name) in the DSPy save ``payload``,
    and the name each has in the file (``""`` for a one-predictor program's).

    Every value the file holds is checked for the JSON type DSPy writes, the
    ``lm``, ``traces``, ``train`` and ``metadata`` it is not read for
    included; keys DSPy may add are not checked.

    Raises:
        StructuringError: a value has the wrong type; the path names it from
            the file's root (``reply.signature.fields[2].prefix: expected a
            string, got 12``).
        TrioDSPyError: a DSPy predictor has no counterpart among ``predictors``
            (or the other way round), or a predictor's fields differ in number
            or name from its signature's; the message names the predictor and
            the field, and ``source`` (the file).
    """
    from .saved_schema import DSPyPredictor, read  # on first load, not at import

    single = _is_predictor_state(payload)
    entries = {"": payload} if single else {k: v for k, v in payload.items() if k != "metadata"}
    if not single and "metadata" in payload:
        read(payload["metadata"], dict[str, Any], "metadata")
    state: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for saved_name, entry in entries.items():
        name = _local_name(saved_name or "predict", predictors)
        if name is None or name in state:
            raise TrioDSPyError(
                f"{source}: DSPy predictor {saved_name!r} has no counterpart in this program, "
                f"whose predictors are {', '.join(predictors)}; load the file into the "
                "program that saved it"
            )
        saved = read(entry, DSPyPredictor, saved_name)
        signature = predictors[name].signature
        state[name] = {
            "signature": signature.__name__,
            "instructions": saved.signature.instructions,
            "fields": _fields(saved_name or "the DSPy predictor", saved, signature, source),
            "demos": saved.demos,
        }
        labels[name] = saved_name
    missing = [n for n in predictors if n not in state]
    if missing:
        raise TrioDSPyError(
            f"{source}: the DSPy file has no state for predictor(s) {', '.join(missing)}"
        )
    return state, labels


def _local_name(saved: str, predictors: Mapping[str, Predictor]) -> str | None:
    candidates = [saved, saved.removesuffix(".predict")]
    if saved == "predict":
        candidates.append("self")
    return next((c for c in candidates if c in predictors), None)


def _fields(
    saved_name: str, saved: DSPyPredictor, signature: type[Signature], source: str
) -> dict[str, dict[str, str]]:
    """Each field's description and prefix, by the name ``signature`` gives it.

    Raises:
        TrioDSPyError: the fields differ in number, or a placeholder or default
            prefix names another field.
    """
    where = f"{source}: DSPy predictor {saved_name!r}"
    fields = saved.signature.fields
    names = list(signature.fields)
    if len(fields) != len(names):
        raise TrioDSPyError(
            f"{where} has {len(fields)} fields, {signature.__name__} has {len(names)} "
            f"({', '.join(names)}): it was saved from another signature"
        )
    loaded: dict[str, dict[str, str]] = {}
    for position, (name, field) in enumerate(zip(names, fields, strict=True), start=1):
        desc, prefix = field.description, field.prefix
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
    return loaded
