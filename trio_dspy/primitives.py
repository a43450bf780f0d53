"""Value containers: :class:`Example`, :class:`Prediction` and :class:`Usage`."""

from __future__ import annotations

import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

__all__ = ["Completions", "Example", "Prediction", "Usage"]


class Example(Mapping[str, Any]):
    """A record of named fields with attribute access.

    ``Example(question="2+2?", answer="4")`` behaves like a read-only mapping
    (``dict(ex)``, ``ex["answer"]``, ``"answer" in ex``) and exposes each
    field as an attribute (``ex.answer``). :meth:`with_inputs` marks which keys
    are inputs, so the same record serves as a few-shot demo and as a test case.
    """

    __slots__ = ("_input_keys", "_store")

    def __init__(self, base: Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        store: dict[str, Any] = dict(base) if base is not None else {}
        if fields:
            store.update(fields)
        object.__setattr__(self, "_store", store)
        input_keys = None
        # A dict, the usual base, is no Example (and spares the ABC's isinstance).
        if type(base) is not dict and isinstance(base, Example):
            input_keys = base._input_keys
        object.__setattr__(self, "_input_keys", input_keys)

    # Mapping protocol -------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self._store[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._store)

    def __len__(self) -> int:
        return len(self._store)

    # Attribute access -------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails, so methods always win.
        try:
            return self._store[name]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__} has no field {name!r}; fields: {', '.join(self._store)}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or isinstance(
            getattr(type(self), name, None), types.MemberDescriptorType
        ):
            object.__setattr__(self, name, value)  # attributes of the object itself
        else:
            self._store[name] = value

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Example):
            return bool(self._store == other._store)
        if isinstance(other, Mapping):
            return bool(self._store == dict(other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self._store.items())
        return f"{type(self).__name__}({body})"

    def __getstate__(self) -> dict[str, Any]:
        return {"store": self._store, "input_keys": self._input_keys}

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_store", state["store"])
        object.__setattr__(self, "_input_keys", state["input_keys"])

    # DSPy-style helpers -----------------------------------------------------------
    def with_inputs(self, *keys: str) -> Example:
        """Return a copy that records ``keys`` as the input fields."""
        missing = [k for k in keys if k not in self._store]
        if missing:
            raise KeyError(f"with_inputs: no field(s) {', '.join(missing)} in {self!r}")
        copy = type(self)(self._store)
        object.__setattr__(copy, "_input_keys", frozenset(keys))
        return copy

    def inputs(self) -> Example:
        """The input fields only (requires :meth:`with_inputs` first)."""
        if self._input_keys is None:
            raise ValueError("inputs() needs with_inputs(...) first to say which keys are inputs")
        return Example({k: v for k, v in self._store.items() if k in self._input_keys})

    def labels(self) -> Example:
        """Every field that is not an input."""
        keys = self._input_keys or frozenset()
        return Example({k: v for k, v in self._store.items() if k not in keys})

    def copy(self, **updates: Any) -> Example:
        """A shallow copy with ``updates`` applied."""
        clone = type(self)(self._store, **updates)
        object.__setattr__(clone, "_input_keys", self._input_keys)
        return clone

    def without(self, *keys: str) -> Example:
        """A copy without ``keys``."""
        return type(self)({k: v for k, v in self._store.items() if k not in keys})

    def to_dict(self) -> dict[str, Any]:
        """A plain ``dict`` of the fields."""
        return dict(self._store)

    def toDict(self) -> dict[str, Any]:
        """DSPy's name for :meth:`to_dict`."""
        return self.to_dict()


class Prediction(Example):
    """The result of a module call: the signature's output fields as attributes.

    Agents add fields such as ``trajectory``; :attr:`usage` holds the tokens the
    call spent (summed over every LM call it made). A call for several
    completions (``n=3`` among the LM arguments) keeps them all in
    :attr:`completions`; the prediction's own fields are the first.
    """

    __slots__ = ("_completions", "usage")

    def __init__(self, base: Mapping[str, Any] | None = None, /, **fields: Any) -> None:
        super().__init__(base, **fields)
        object.__setattr__(self, "usage", Usage())
        object.__setattr__(self, "_completions", None)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "usage": self.usage, "completions": self._completions}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        object.__setattr__(self, "usage", state["usage"])
        object.__setattr__(self, "_completions", state.get("completions"))

    @classmethod
    def from_completions(
        cls,
        fields: Mapping[str, Any],
        usage: Usage | None = None,
        completions: Sequence[Mapping[str, Any]] | None = None,
    ) -> Prediction:
        """Build a prediction from parsed fields and the usage that produced them.

        ``completions`` lists every completion's fields when there were several
        (``fields`` is then the first of them).
        """
        several = completions is not None and len(completions) > 1
        if cls is not Prediction or type(fields) is not dict:
            pred = cls(fields)
            if usage is not None:
                object.__setattr__(pred, "usage", usage)
            if several:
                object.__setattr__(pred, "_completions", Completions(completions or ()))
            return pred
        # Every call builds one: the fields set directly, without a Usage()
        # that ``usage`` would replace at once.
        # Through the slots' own setters: half the cost of object.__setattr__.
        pred = object.__new__(Prediction)
        _SET_STORE(pred, dict(fields))
        _SET_INPUT_KEYS(pred, None)
        _SET_USAGE(pred, Usage() if usage is None else usage)
        _SET_COMPLETIONS(pred, Completions(completions or ()) if several else None)
        return pred

    def __str__(self) -> str:
        """DSPy's text form: one ``field=value`` line per field, then the number
        of further completions. A ``Prediction`` passed into a ``str`` input is
        sent this way, as DSPy sends it."""
        body = ",\n    ".join(f"{k}={v!r}" for k, v in self._store.items())
        if self._completions is None or len(self._completions) == 1:
            return f"Prediction(\n    {body}\n)"
        more = len(self._completions) - 1
        return (
            f"Prediction(\n    {body},\n    completions=Completions(...)\n) "
            f"({more} completions omitted)"
        )

    @property
    def completions(self) -> Completions:
        """Every completion of the call, as in DSPy: ``pred.completions.answer`` is
        the list of answers, ``pred.completions[i]`` the ``i``-th as a ``Prediction``.
        A single completion when the call asked for one."""
        return self._completions or Completions([self._store])


# The slots a prediction is built through (Prediction.from_completions).
_SET_STORE = Example.__dict__["_store"].__set__
_SET_INPUT_KEYS = Example.__dict__["_input_keys"].__set__
_SET_USAGE = Prediction.__dict__["usage"].__set__
_SET_COMPLETIONS = Prediction.__dict__["_completions"].__set__


class Completions:
    """Several completions of one call (:attr:`Prediction.completions`).

    ``len(c)`` completions; ``c[i]`` (and iteration) gives each as a
    :class:`Prediction`; ``c.answer`` or ``c["answer"]`` the list of one
    field's values, in completion order; ``c.items()`` every field's list.
    """

    __slots__ = ("_items",)

    def __init__(self, completions: Iterable[Mapping[str, Any]]) -> None:
        self._items = tuple(dict(c) for c in completions)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Prediction]:
        return (Prediction(c) for c in self._items)

    def __getitem__(self, key: int | str) -> Any:
        """The ``key``-th completion (an ``int``), or one field's values (a ``str``).

        Raises:
            IndexError: no completion ``key``.
            KeyError: no completion has field ``key``.
        """
        if isinstance(key, int):
            return Prediction(self._items[key])
        if not any(key in c for c in self._items):
            raise KeyError(key)
        return [c.get(key) for c in self._items]

    def __getattr__(self, name: str) -> list[Any]:
        if name.startswith("_"):  # not a field (and _items before __init__, in copies)
            raise AttributeError(name)
        try:
            return self[name]  # type: ignore[no-any-return]
        except KeyError:
            raise AttributeError(f"no completion has a field {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return any(name in c for c in self._items)

    def items(self) -> list[tuple[str, list[Any]]]:
        """``(field, values)`` for every field, values in completion order."""
        names = dict.fromkeys(k for c in self._items for k in c)
        return [(n, [c.get(n) for c in self._items]) for n in names]

    def __repr__(self) -> str:
        body = ", ".join(f"{name}={values!r}" for name, values in self.items())
        return f"Completions({body})"


@attrs.define
class Usage:
    """Token counts. Adding two gives their sum; :func:`track_usage` yields one.

    ``requests`` counts the model calls a :func:`track_usage` block saw answered
    by a model (cache hits not included); one response's own usage has 0.

    ``cost`` is in US dollars, or ``None`` when it is not known: the server
    reported none and no price is known for the model (prices come from the
    ``prices`` extra, see :mod:`trio_dspy.lm.prices`). A sum's cost is known
    only if every call's in it is: one call of unknown price makes it
    ``None``, since a partial sum would understate what was spent. An empty
    ``Usage`` (no tokens, no requests, no cost) adds nothing, cost included.
    Two usages compare equal by their counts alone.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    requests: int = 0
    cost: float | None = attrs.field(default=None, eq=False)

    def _is_empty(self) -> bool:
        return not (self.total_tokens or self.prompt_tokens or self.requests) and self.cost is None

    def add(self, other: Usage) -> None:
        """Add ``other``'s counts (and cost) to this one in place."""
        self.cost = _summed_cost(self, other)
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.total_tokens += other.total_tokens
        self.requests += other.requests

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
            self.requests + other.requests,
            _summed_cost(self, other),
        )

    @classmethod
    def sum(cls, items: Iterable[Usage]) -> Usage:
        """The sum of ``items``."""
        total = cls()
        for item in items:
            total.add(item)
        return total


def _summed_cost(a: Usage, b: Usage) -> float | None:
    """The cost of ``a + b``: unknown if either side's is (an empty side adds nothing)."""
    if b._is_empty():
        return a.cost
    if a._is_empty():
        return b.cost
    if a.cost is None or b.cost is None:
        return None
    return a.cost + b.cost
