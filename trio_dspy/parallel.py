"""DSPy's ``Parallel`` and ``asyncify``, on trio: calls are child tasks, not threads.

``await td.Parallel(limit=8)(exec_pairs)`` runs ``module(**example.inputs())``
for each ``(module, example)`` pair as a child task of one nursery (through
:func:`~trio_dspy.gather`) and returns the results in input order, ``None``
where a call failed, as DSPy's does. ``td.asyncify(fn)`` makes a blocking
function awaitable (it runs in a worker thread); a module is async already.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import trio

from .aliases import limit_alias, refuse_keywords
from .checkpoint import entered
from .concurrency import gather
from .errors import ParallelError
from .logs import get_logger
from .primitives import Example

__all__ = ["Parallel", "asyncify"]

_log = get_logger(__name__)

DEFAULT_LIMIT = 16

_DSPY_ONLY = {
    "timeout": "bound the whole run with `with trio.fail_after(seconds):` around the call",
    "straggler_limit": "bound the whole run with `with trio.fail_after(seconds):` around the call",
}


def asyncify(program: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """``program`` as an async callable: DSPy's ``asyncify``.

    A module (or any async function, or object with an async ``__call__``)
    is returned as it is: awaiting its call already runs it in trio. A
    synchronous function is wrapped: each call runs it in a worker thread
    (``trio.to_thread.run_sync``), with the caller's settings (contextvars)
    and abandoned on cancellation (the thread finishes, its result dropped).

    Raises:
        TypeError: ``program`` is not callable.
    """
    from .modules.module import Module

    if not callable(program):
        raise TypeError(f"asyncify needs a module or a function, got {type(program).__name__}")
    if isinstance(program, Module) or _is_async(program):
        return program

    @functools.wraps(program)
    async def in_thread(*args: Any, **kwargs: Any) -> Any:
        call = functools.partial(program, *args, **kwargs)
        return await trio.to_thread.run_sync(call, abandon_on_cancel=True)

    return in_thread


def _is_async(fn: Any) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    return not inspect.isroutine(fn) and inspect.iscoroutinefunction(type(fn).__call__)


class Parallel:
    """Run ``(module, example)`` pairs concurrently: DSPy's ``Parallel``, awaited.

    ::

        results = await td.Parallel(limit=3)([(qa, ex) for ex in examples])

    Each pair is called as DSPy does: an :class:`~trio_dspy.Example` as
    ``module(**example.inputs())`` (``module(example)`` with
    ``access_examples=False``), a dict as ``module(**d)``, a tuple as
    ``module(*t)``, a list given to a ``Parallel`` as ``module(list)``. A
    synchronous function runs in a worker thread (:func:`asyncify`).

    Args:
        num_threads: DSPy's name for ``limit`` (deprecated: it warns).
        max_errors: how many failed calls are tolerated; one more cancels the
            others and raises :class:`~trio_dspy.errors.ParallelError`
            (``None``: never stop).
        access_examples: call with an Example's inputs (``True``) or the
            Example itself.
        return_failed_examples: return ``(results, failed_examples,
            exceptions)`` instead of ``results``.
        provide_traceback: log each failure with its traceback (``logging``
            under ``"trio_dspy"``, silent unless the application turns it on).
        disable_progress_bar: do not print ``done/total`` to stderr.
        limit: the most calls in flight at once.

    Raises:
        TypeError: a DSPy keyword this class does not take (``timeout=``,
            ``straggler_limit=``): the message says what to write.
        ValueError: ``limit`` or ``max_errors`` is out of range.
    """

    def __init__(
        self,
        num_threads: int | None = None,
        max_errors: int | None = None,
        access_examples: bool = True,
        return_failed_examples: bool = False,
        provide_traceback: bool | None = None,
        disable_progress_bar: bool = False,
        *,
        limit: int | None = None,
        **dspy_only: Any,
    ) -> None:
        refuse_keywords("td.Parallel", dspy_only, _DSPY_ONLY)
        limit = limit_alias(limit, num_threads, "td.Parallel")
        limit = DEFAULT_LIMIT if limit is None else limit
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if max_errors is not None and max_errors < 0:
            raise ValueError(f"max_errors must be 0 or more, got {max_errors}")
        self.limit = limit
        self.max_errors = max_errors
        self.access_examples = access_examples
        self.return_failed_examples = return_failed_examples
        self.provide_traceback = bool(provide_traceback)
        self.disable_progress_bar = disable_progress_bar

    async def __call__(
        self, exec_pairs: Sequence[tuple[Any, Any]], num_threads: int | None = None
    ) -> Any:
        """Run every pair; results in input order, ``None`` where a call failed.

        Returns ``(results, failed_examples, exceptions)`` when
        ``return_failed_examples`` is set. ``num_threads`` overrides the limit
        for this run (deprecated: it warns).

        Raises:
            ParallelError: more than ``max_errors`` calls failed; the others
                were cancelled.
            ValueError: an example is of a kind DSPy does not call (not an
                Example, dict, tuple, or list for a Parallel).
            RuntimeError: not running under ``trio.run``.
        """
        await entered()
        limit = limit_alias(None, num_threads, "td.Parallel()") or self.limit
        pairs = list(exec_pairs)
        calls = [self._call(module, example) for module, example in pairs]
        results: list[Any] = [None] * len(pairs)
        errors: dict[int, BaseException] = {}
        done = 0

        def slot(index: int, call: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                nonlocal done
                try:
                    results[index] = await call()
                except Exception as exc:
                    errors[index] = exc
                    self._log_failure(index, exc)
                    if self.max_errors is not None and len(errors) > self.max_errors:
                        raise ParallelError(
                            f"{len(errors)} call(s) failed, more than max_errors="
                            f"{self.max_errors}; the others were cancelled. The first: "
                            f"{type(errors[min(errors)]).__name__}: {errors[min(errors)]}",
                            results=results,
                            errors=errors,
                        ) from exc
                finally:
                    done += 1
                    if not self.disable_progress_bar:
                        end = "\n" if done == len(pairs) else ""
                        print(f"\r{done}/{len(pairs)} done", end=end, file=sys.stderr, flush=True)

            return run

        await gather(*(slot(i, c) for i, c in enumerate(calls)), limit=limit)
        if not self.return_failed_examples:
            return results
        failed = sorted(errors)
        return results, [pairs[i][1] for i in failed], [errors[i] for i in failed]

    def _call(self, module: Any, example: Any) -> Callable[[], Awaitable[Any]]:
        fn = asyncify(module)
        if isinstance(example, Example):
            if self.access_examples:
                return functools.partial(fn, **example.inputs())
            return functools.partial(fn, example)
        if isinstance(example, Mapping):
            return functools.partial(fn, **example)
        if isinstance(example, list) and isinstance(module, Parallel):
            return functools.partial(fn, example)
        if isinstance(example, tuple):
            return functools.partial(fn, *example)
        raise ValueError(
            f"Invalid example type: {type(example).__name__}, only supported types are "
            "Example, dict, list and tuple"
        )

    def _log_failure(self, index: int, exc: Exception) -> None:
        if self.provide_traceback:
            _log.error("parallel.failed", index=index, exc_info=exc)
        else:
            _log.error(
                "parallel.failed",
                index=index,
                error=f"{type(exc).__name__}: {exc}",
                hint="set provide_traceback=True for the traceback",
            )
