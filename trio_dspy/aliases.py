"""DSPy's keyword names where trio_dspy has its own: accepted with a warning, or refused
with what to write.

A DSPy program ports by renaming ``dspy.`` to ``td.`` and adding ``await``;
the keywords it passes should then either work (``num_threads=`` is
``limit=``, with a :class:`DeprecationWarning`) or fail with a message naming
this library's spelling, never Python's bare "unexpected keyword argument".
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, overload

__all__ = ["DSPY_ONLY_NAMES", "limit_alias", "refuse_dspy_keywords", "refuse_keywords", "renamed"]


def renamed(value: Any, dspy_name: str, name: str, where: str) -> Any:
    """``value`` given under DSPy's ``dspy_name``, with a warning naming ``name``."""
    warnings.warn(
        f"{where}({dspy_name}=...) is DSPy's name: write {name}={value!r}",
        DeprecationWarning,
        stacklevel=3,
    )
    return value


@overload
def limit_alias(
    limit: int, num_threads: int | None, where: str, *, default: int | None = None
) -> int: ...


@overload
def limit_alias(
    limit: int | None, num_threads: int | None, where: str, *, default: int | None = None
) -> int | None: ...


def limit_alias(
    limit: int | None, num_threads: int | None, where: str, *, default: int | None = None
) -> int | None:
    """``limit``, or ``num_threads`` (DSPy's name for it) when only that was given.

    ``default`` is ``limit``'s default: a ``limit`` equal to it counts as not given.

    Raises:
        TypeError: both were given, with different values.
    """
    if num_threads is None:
        return limit
    if limit is not None and limit != default and limit != num_threads:
        raise TypeError(
            f"{where} got limit={limit} and num_threads={num_threads}: "
            "num_threads is DSPy's name for limit; give limit= only"
        )
    warnings.warn(
        f"{where}(num_threads=...) is DSPy's name: write limit={num_threads} "
        "(calls run as trio child tasks, not threads)",
        DeprecationWarning,
        stacklevel=3,
    )
    return num_threads


def refuse_keywords(where: str, given: Mapping[str, Any], advice: Mapping[str, str]) -> None:
    """Raise for the keywords in ``given`` (what ``**kwargs`` caught), if any.

    ``advice`` maps each DSPy keyword trio_dspy does not take to what to write
    instead; any other name is reported as unknown.

    Raises:
        TypeError: ``given`` is not empty; the message names the first keyword
            and, for a DSPy one, what to use.
    """
    for name in given:
        if name in advice:
            raise TypeError(f"{where} does not take DSPy's {name}=: {advice[name]}")
        raise TypeError(f"{where} got an unexpected keyword argument {name!r}")


def refuse_dspy_keywords(where: str, given: Mapping[str, Any], advice: Mapping[str, str]) -> None:
    """Raise for the first DSPy keyword of ``advice`` among ``given``; others pass.

    For ``**kwargs`` that mean something else here (a ``Predict``'s sampling
    parameters), where only DSPy's own names must not slip through.

    Raises:
        TypeError: a keyword of ``advice`` is in ``given``; the message says
            what to write instead.
    """
    refuse_keywords(where, {k: v for k, v in given.items() if k in advice}, advice)


#: DSPy's top-level names that trio_dspy does not provide, and what to use
#: instead: ``td.<name>`` raises an AttributeError saying so.
DSPY_ONLY_NAMES = {
    "load": (
        "a program is saved as its state only (JSON), never pickled: build the "
        "program (`program = MyProgram()`) and call `program.load(path)`"
    ),
    "syncify": "from synchronous code run a program with `td.run(program, **inputs)`",
    "ProgramOfThought": (
        "it runs model-written code, which needs a sandbox not provided here; "
        "give a td.ReAct agent a tool that computes what you need"
    ),
    "CodeAct": (
        "it runs model-written code, which needs a sandbox not provided here; "
        "use td.ReAct with your tools"
    ),
    "ColBERTv2": (
        "no hosted-index client is provided: search with td.retrievers.Embeddings "
        "or pass your own async search function"
    ),
    "BootstrapFinetune": "fine-tuning is not provided: optimize prompts (td.MIPROv2, td.GEPA)",
}
