"""What calling a module returns, and the mistakes a DSPy habit makes with it.

``qa(question=...)`` returns a :class:`ModuleCall`: a coroutine (so
``await``, ``trio.run`` and ``nursery.start_soon`` take it as they take any
other) that, unlike a bare coroutine, says what to write when it is used as
the prediction it has not produced yet (``qa(question=...).answer``, DSPy's
synchronous spelling).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..primitives import Prediction

if TYPE_CHECKING:
    from types import TracebackType


__all__ = [
    "PLAIN",
    "ModuleCall",
    "bind_positional",
    "input_names",
    "not_awaited",
    "positional_error",
]

T = TypeVar("T")


def _advice(name: str) -> str:
    return (
        f"a call of {name} was used without `await`: write `pred = await {name}(...)` "
        f"inside async code, or `pred = td.run({name}, ...)` from synchronous code"
    )


class ModuleCall(Coroutine[Any, Any, T]):
    """One call of a module, not yet run: ``await`` it for the prediction.

    It is a coroutine in every way trio looks at one; reading a field from
    it (``.answer``), indexing or iterating it raises an error saying to
    await it first.
    """

    __slots__ = ("_coro", "_module")

    def __init__(self, coro: Coroutine[Any, Any, T], module: str) -> None:
        self._coro = coro
        self._module = module

    def __await__(self) -> Generator[Any, None, T]:
        return self._coro.__await__()

    def send(self, value: Any) -> Any:
        """Resume the call (the coroutine protocol)."""
        return self._coro.send(value)

    def throw(
        self,
        typ: Any,
        val: Any = None,
        tb: TracebackType | None = None,
    ) -> Any:
        """Raise inside the call (the coroutine protocol)."""
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)  # pragma: no cover - legacy signature

    def close(self) -> None:
        """Drop the call without running it (the coroutine protocol)."""
        self._coro.close()

    def __getattr__(self, attr: str) -> Any:
        # Only names the class lacks get here: a field name (``.answer``) is
        # the DSPy habit; the coroutine's own ``cr_*`` introspection is passed on.
        if attr.startswith("cr_"):
            return getattr(self._coro, attr)
        if attr in ("__name__", "__qualname__"):  # trio names the call in its errors
            return self._module
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise AttributeError(f"cannot read .{attr}: {_advice(self._module)}")

    def __getitem__(self, key: Any) -> Any:
        raise TypeError(f"cannot read [{key!r}]: {_advice(self._module)}")

    def __iter__(self) -> Any:
        raise TypeError(f"cannot iterate: {_advice(self._module)}")

    def __bool__(self) -> bool:
        raise TypeError(f"cannot test its truth: {_advice(self._module)}")

    def __repr__(self) -> str:
        return f"<{self._module} call, not awaited yet>"


#: What forward returns nearly always: no awaitable, known without the slower ABC check.
PLAIN: frozenset[type] = frozenset({Prediction, dict, str, list, tuple, type(None)})


def not_awaited(value: Any, where: str) -> TypeError | None:
    """The error for ``value`` if it is an awaitable left un-awaited at ``where``, else None.

    A coroutine is closed, so no "never awaited" warning follows the error.
    """
    if type(value) in PLAIN or not inspect.isawaitable(value):
        return None
    name = value._module if isinstance(value, ModuleCall) else type(value).__name__
    if isinstance(value, Coroutine):
        name = getattr(value, "__qualname__", name)
        value.close()
    return TypeError(
        f"{where} is an un-awaited call ({name}): write `await` before the call "
        f"that produced it, e.g. `pred = await self.step(...)`"
    )


class _Forwarding(Protocol):
    """A module as these messages see it (:class:`~trio_dspy.Module`): its ``forward``."""

    forward: Callable[..., Any]


def input_names(module: _Forwarding) -> list[str]:
    """The keyword arguments ``module`` takes: its signature's inputs, else its forward's."""
    signature = getattr(module, "signature", None)
    fields = getattr(signature, "input_fields", None)
    if isinstance(fields, dict):
        return list(fields)
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in kinds]


def positional_error(module: _Forwarding, args: tuple[Any, ...]) -> TypeError:
    """DSPy's message for positional arguments, naming ``module``'s input fields."""
    name = type(module).__name__
    shown = f"td.{name}" if type(module).__module__.startswith("trio_dspy.") else name
    names = input_names(module)
    if not names:
        return TypeError(
            f"{name} takes keyword arguments only; got {len(args)} positional argument(s)"
        )
    return TypeError(
        f"Positional arguments are not allowed when calling `{shown}`, must use keyword "
        f"arguments that match its input fields: '{', '.join(names)}'. For example: "
        f"`await module({names[0]}=input_value, ...)`."
    )


def bind_positional(
    module: _Forwarding, args: tuple[Any, ...], inputs: dict[str, Any]
) -> dict[str, Any]:
    """``inputs`` with ``args`` given to ``module.forward``'s positional parameters, as
    DSPy's ``Module.__call__`` passes them (``metric(example, pred)``).

    Raises:
        TypeError: ``forward`` takes no (or fewer) positional parameters, as a
            predictor's does (the message names the input fields), or an
            argument is given both ways.
    """
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - builtins
        raise positional_error(module, args) from None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [p.name for p in params if p.kind in kinds]
    if len(args) > len(names):
        raise positional_error(module, args)
    bound = dict(zip(names, args))
    twice = sorted(bound.keys() & inputs.keys())
    if twice:
        raise TypeError(
            f"{type(module).__name__} got {', '.join(twice)} both by position and by keyword"
        )
    return {**bound, **inputs}
