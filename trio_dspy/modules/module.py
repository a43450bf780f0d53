"""``Module``: the base of everything callable — predictors, agents, programs.

A module is an object with ``async def forward(self, **inputs)``; calling it
(``await module(**inputs)``) runs ``forward``. Modules hold sub-modules as
plain attributes (or in lists and dicts), and the base class finds them:
:meth:`Module.named_predictors` walks the tree, :meth:`Module.save` and
:meth:`Module.load` carry every predictor's learned state (instructions and
demos) as JSON. Nothing is ever pickled.
"""

from __future__ import annotations

import copy
import errno
import inspect
import json
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Self

import trio

from ..checkpoint import entering, yielded_since
from ..errors import StructuringError, TrioDSPyError
from ..stream_listener import heard, module_status
from ..telemetry import semconv as sc
from ..telemetry.span import AttributeValue, start_span
from ..types import loads_json
from ..unicode import clean_json, has_surrogate_escape
from .call import PLAIN, ModuleCall, bind_positional, not_awaited
from .dspy_state import dspy_state, is_dspy_save
from .predictor import Predictor

__all__ = ["Module", "Predictor"]

STATE_FORMAT = "trio_dspy.module/1"


class Module:
    """Base class of modules: subclass it and write ``async def forward``."""

    if TYPE_CHECKING:
        # Subclasses narrow the result (``-> Prediction``); positional
        # arguments go to forward's positional parameters, as in DSPy, and
        # are refused at run time, naming the input fields, when it has none.
        def __call__(self, **inputs: Any) -> Coroutine[Any, Any, Any]: ...

    else:

        def __call__(self, *args: Any, **inputs: Any) -> ModuleCall[Any]:
            """Call the module: ``await module(**inputs)`` runs :meth:`forward` in a span.

            The call is a checkpoint (it checks for cancellation first, and yields),
            as trio's rule asks of every async function. What it returns is a
            coroutine that, used without ``await``, says to await it.

            Raises:
                TypeError: positional arguments ``forward`` has no parameters
                    for, as a predictor's (the message names the input
                    fields); when awaited, ``forward`` is a plain ``def`` or
                    returned a call it did not await.
                RuntimeError: not running under ``trio.run``.
            """
            if args:  # as DSPy: a forward with positional parameters takes them
                inputs = bind_positional(self, args, inputs)
            return ModuleCall(self._invoke(inputs), type(self).__name__)

    async def acall(self, **inputs: Any) -> Any:
        """DSPy's spelling of ``await module(**inputs)``: the same call."""
        return await self(**inputs)

    async def _invoke(self, inputs: dict[str, Any]) -> Any:
        mark = await entering()
        with start_span(self._span_name()) as span:
            if span.is_recording:
                span.set_attributes(self._span_attributes())
            listened = heard()  # a streamed run listens to this task (it stays so)
            if listened:  # a stream's provider's line
                await module_status(self, inputs, start=True)
            running = self.forward(**inputs)
            if type(running) is not CoroutineType and not inspect.isawaitable(running):
                raise TypeError(
                    f"{type(self).__name__}.forward is a plain def: write "
                    "`async def forward(self, ...)` and `await` the modules it calls"
                )
            result = await running
            if type(result) not in PLAIN:  # the error's text only when it may be needed
                error = not_awaited(result, f"what {type(self).__name__}.forward returned")
                if error is not None:
                    raise error
            if listened:
                await module_status(self, result, start=False)
        if not yielded_since(mark):  # a checkpoint even when forward awaited nothing of trio's
            await trio.lowlevel.cancel_shielded_checkpoint()
        return result

    def _span_name(self) -> str:
        return f"invoke_agent {type(self).__name__}"

    def _span_attributes(self) -> dict[str, AttributeValue | None]:
        return {
            sc.GEN_AI_OPERATION_NAME: sc.OPERATION_INVOKE_AGENT,
            sc.GEN_AI_AGENT_NAME: type(self).__name__,
        }

    if TYPE_CHECKING:
        # Subclasses declare their own keyword arguments
        # (``async def forward(self, question: str) -> Prediction``): typed as a
        # callable attribute, any such signature is a valid override.
        forward: Callable[..., Awaitable[Any]]
        aforward: Callable[..., Awaitable[Any]]
    else:

        async def forward(self, **inputs: Any) -> Any:
            """Do the module's work. Subclasses override this (or :meth:`aforward`)."""
            if type(self).aforward is Module.aforward:
                raise NotImplementedError(
                    f"{type(self).__name__} must define async def forward(self, **inputs)"
                )
            return await self.aforward(**inputs)

        async def aforward(self, **inputs: Any) -> Any:
            """DSPy's name for the async ``forward``: a module may define either."""
            if type(self).forward is Module.forward:
                raise NotImplementedError(
                    f"{type(self).__name__} must define async def forward(self, **inputs)"
                )
            return await self.forward(**inputs)

    # ------------------------------------------------------------- the module tree
    def named_sub_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Every module reachable from this one (itself first, as ``prefix or 'self'``).

        Attributes, list/tuple items and dict values are searched; each module
        is reported once, under the first name it is found by.
        """
        seen: set[int] = set()
        yield from self._walk(prefix or "self", seen)

    def _walk(self, name: str, seen: set[int]) -> Iterator[tuple[str, Module]]:
        if id(self) in seen:
            return
        seen.add(id(self))
        yield name, self
        base = "" if name == "self" else f"{name}."
        for attr, value in vars(self).items():
            if attr.startswith("_"):
                continue
            yield from _walk_value(value, f"{base}{attr}", seen)

    def named_predictors(self) -> list[tuple[str, Predictor]]:
        """``(name, predictor)`` for every :class:`Predictor` in the tree, in order.

        Names are DSPy's paths: a ``ChainOfThought`` at ``x`` is ``"x.predict"``
        (``"predict"`` when the program is one), as DSPy's inner ``Predict`` is.
        """
        return [
            (_dspy_path(n, m), m) for n, m in self.named_sub_modules() if isinstance(m, Predictor)
        ]

    def predictors(self) -> list[Predictor]:
        """Every :class:`Predictor` (e.g. :class:`~trio_dspy.Predict`) in the tree."""
        return [p for _, p in self.named_predictors()]

    def deepcopy(self) -> Self:
        """A deep copy; language models are shared, not copied."""
        return copy.deepcopy(self)

    def reset_copy(self) -> Self:
        """A deep copy with every predictor's demos cleared."""
        clone = self.deepcopy()
        for p in clone.predictors():
            p.reset()
        return clone

    # -------------------------------------------------------------------- state
    def dump_state(self) -> dict[str, Any]:
        """Every predictor's state (instructions, field descriptions, demos), JSON-ready."""
        return {name: p.dump_predictor_state() for name, p in self.named_predictors()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`dump_state` produced: all of it, or nothing.

        Every predictor's state is validated before any predictor changes;
        lone surrogates in its text become U+FFFD.

        Raises:
            StructuringError: a value has the wrong type (or, for a ``Predict``,
                a key is missing or unknown); the path starts with the
                predictor's name (``qa.demos[2].answer: ...``).
            TrioDSPyError: the state names predictors this module does not
                have, lacks some it has, or was saved from another signature.
        """
        self._load_state(state, {})

    def _load_state(self, state: Mapping[str, Any], labels: Mapping[str, str]) -> None:
        """:meth:`load_state`, naming predictor ``name`` ``labels[name]`` in error paths."""
        from .saved_schema import describe  # on first load, not at import

        if not isinstance(state, Mapping):
            raise TrioDSPyError(f"saved state must be an object, got {describe(state)}")
        predictors = dict(self.named_predictors())
        state = _renamed(clean_json(dict(state)), predictors)
        missing = sorted(set(predictors) - set(state))
        extra = sorted(set(state) - set(predictors))
        if missing or extra:
            raise TrioDSPyError(
                f"saved state does not match {type(self).__name__}: "
                + "; ".join(
                    part
                    for part in (
                        f"missing predictor(s) {', '.join(missing)}" if missing else "",
                        f"unknown predictor(s) {', '.join(extra)}" if extra else "",
                    )
                    if part
                )
            )
        # Validate everything before changing anything, so a bad file loses nothing.
        loaded = {}
        for name, predictor in predictors.items():
            try:
                loaded[name] = predictor.parse_predictor_state(state[name])
            except StructuringError as exc:
                where = _join(labels.get(name, name), exc.path)
                raise StructuringError(where, exc.value, exc.reason) from None
        for name, parsed in loaded.items():
            predictors[name].apply_predictor_state(parsed)

    def save(self, path: str | os.PathLike[str], *, save_program: bool = False) -> None:
        """Write the module's state to ``path`` as JSON (atomically).

        Only JSON is written, never a pickle: a ``.pkl`` path (or DSPy's
        ``save_program=True``, which pickles the whole program) is refused.

        Raises:
            TrioDSPyError: ``path`` ends in ``.pkl``/``.pickle``, or
                ``save_program`` is true.
            IsADirectoryError: ``path`` is a directory (a file path is needed).
            FileNotFoundError: ``path``'s directory does not exist.
            OSError: the file cannot be written.
        """
        target = _save_target(path, save_program)
        payload = {"format": STATE_FORMAT, "predictors": self.dump_state()}
        fd, tmp = tempfile.mkstemp(
            dir=target.parent or ".", prefix=f".{target.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(payload, f, indent=2, ensure_ascii=False)
                f.write("\n")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, path: str | os.PathLike[str], *, allow_pickle: bool = False) -> None:
        """Read state written by :meth:`save`, or by DSPy's ``program.save(path)``.

        ``allow_pickle`` is DSPy's; here only ``False`` is taken (pickles are
        never read).

        A DSPy file (its JSON format; pickles are never read) gives each
        predictor its demos, instructions, field descriptions and prefixes
        when the predictors and their fields match this module's (both name
        them by DSPy's paths, ``"x.predict"`` for a ChainOfThought ``x``; a
        file saved here before that, naming it ``"x"``, loads too). Loading is
        all or nothing: the whole file is validated first, every value for
        its JSON type (and, in the native format, every key), every demo
        value for its field's type. Lone surrogates in the file's text
        become U+FFFD.

        Raises:
            OSError: the file cannot be read.
            StructuringError: a value has the wrong type; the message names
                its path in the file and what was expected
                (``triage.predict.signature.instructions: expected a string,
                got a list``). Nothing is changed then.
            TrioDSPyError: ``allow_pickle`` is true or the path is a pickle's
                (``.pkl``), the file is not UTF-8 JSON, not a saved trio_dspy
                module nor a DSPy save, or does not match this module's
                predictors and their signatures' fields (the message names the
                predictor and field; nothing is changed then).
        """
        if Path(path).suffix in _PICKLES or allow_pickle:
            raise TrioDSPyError(
                f"{path}: pickled saves are never read (unpickling runs code); save the "
                "DSPy program as JSON with program.save('program.json') and load that"
            )
        data = Path(path).read_bytes()
        try:
            payload = loads_json(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise TrioDSPyError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
        except ValueError as exc:
            raise TrioDSPyError(f"{path}: not a JSON file ({exc})") from None
        if has_surrogate_escape(data):
            payload = clean_json(payload)
        try:
            if is_dspy_save(payload):
                state, labels = dspy_state(payload, dict(self.named_predictors()), str(path))
                self._load_state(state, labels)
                return
            if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
                raise TrioDSPyError(
                    f"{path}: not a saved trio_dspy module (format {STATE_FORMAT!r}) "
                    "nor a DSPy save file"
                )
            from .saved_schema import SavedModule, read

            self._load_state(read(payload, SavedModule).predictors, {})
        except StructuringError as exc:
            raise StructuringError(exc.path, exc.value, f"{exc.reason} (in {path})") from None

    async def batch(
        self,
        inputs: Sequence[Mapping[str, Any]],
        *,
        limit: int | None = None,
        return_exceptions: bool = False,
        progress: bool | Callable[[int, int], None] = False,
        num_threads: int | None = None,
        **dspy_only: Any,
    ) -> list[Any]:
        """Call the module once per input dict, concurrently; results in input order.

        ``limit`` bounds how many calls run at once. With
        ``return_exceptions=False`` the first failure cancels the others and is
        raised; with ``True`` each failed slot holds its exception.
        ``progress=True`` prints ``done/total`` to stderr as calls finish; a
        function ``progress(done, total)`` is called instead if given.
        ``num_threads`` is DSPy's name for ``limit`` (deprecated: it warns).
        An :class:`~trio_dspy.Example` with its inputs marked is called with
        its inputs only, as DSPy's ``batch`` does.

        Raises:
            TypeError: ``num_threads`` and a different ``limit`` were both
                given, or a DSPy keyword ``batch`` does not take (the message
                says what to write).
            Exception: the first failure, when ``return_exceptions`` is false.
        """
        from ..aliases import limit_alias, refuse_keywords
        from ..concurrency import gather
        from ..primitives import Example

        refuse_keywords("Module.batch", dspy_only, _BATCH_DSPY_ONLY)
        limit = limit_alias(limit, num_threads, "Module.batch")
        report = _progress_printer if progress is True else (progress or None)
        total = len(inputs)
        done = 0

        def bind(kwargs: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
            async def call() -> Any:
                nonlocal done
                try:
                    return await self(**kwargs)
                finally:
                    done += 1
                    if report is not None:
                        report(done, total)

            return call

        calls = [
            bind(dict(i.inputs() if isinstance(i, Example) and i._input_keys else i))
            for i in inputs
        ]
        if return_exceptions:
            return await gather(*calls, limit=limit, return_exceptions=True)
        return await gather(*calls, limit=limit)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={p!r}" for n, p in self.named_predictors() if n != "self")
        return f"{type(self).__name__}({inner})"


_PICKLES = frozenset({".pkl", ".pickle"})

_FAILURES = "use return_exceptions=True: each failed slot then holds its exception"
# DSPy's batch keywords that have no counterpart here.
_BATCH_DSPY_ONLY = {
    "max_errors": f"{_FAILURES}, or td.Parallel(max_errors=...)",
    "return_failed_examples": _FAILURES,
    "provide_traceback": _FAILURES,
    "disable_progress_bar": "progress is off unless progress=True",
    "timeout": "bound the batch with `with trio.fail_after(seconds):`",
    "straggler_limit": "bound the batch with `with trio.fail_after(seconds):`",
}


def _save_target(path: str | os.PathLike[str], save_program: bool) -> Path:
    """The file :meth:`Module.save` writes, after refusing what it cannot be."""
    if save_program:
        raise TrioDSPyError(
            "save_program=True is DSPy's whole-program pickle; here save writes the "
            "learned state as JSON: build the program in code, then load(path) its state"
        )
    target = Path(path)
    if target.suffix in _PICKLES:
        raise TrioDSPyError(
            f"{path}: save writes JSON, never a pickle (DSPy pickles .pkl files); give a .json path"
        )
    if target.is_dir() or os.fspath(path).endswith(("/", os.sep)):
        raise IsADirectoryError(
            errno.EISDIR,
            "save needs a file path such as <dir>/program.json, not a directory",
            os.fspath(path),
        )
    if not target.parent.is_dir():
        raise FileNotFoundError(
            errno.ENOENT, f"no directory {str(target.parent)!r} to save into", os.fspath(path)
        )
    return target


def _progress_printer(done: int, total: int) -> None:
    end = "\n" if done == total else ""
    print(f"\r{done}/{total} done", end=end, file=sys.stderr, flush=True)


def _join(label: str, path: str) -> str:
    """``label`` then ``path`` as one path (``qa`` + ``demos[0]`` -> ``qa.demos[0]``)."""
    if not label or not path:
        return label or path
    return f"{label}{path}" if path.startswith("[") else f"{label}.{path}"


def _dspy_path(name: str, module: Module) -> str:
    """``name`` as DSPy's path: a module with an inner-predictor name adds it."""
    inner: str | None = getattr(type(module), "dspy_inner_name", None)
    if inner is None:
        return name
    return inner if name == "self" else f"{name}.{inner}"


def _renamed(state: dict[str, Any], predictors: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` with the names saved before DSPy's paths were used (``"x"`` and
    ``"self"`` for a ChainOfThought's ``"x.predict"`` and ``"predict"``) made current."""
    for name, predictor in predictors.items():
        inner = getattr(type(predictor), "dspy_inner_name", None)
        if inner is None or name in state:
            continue
        old = "self" if name == inner else name.removesuffix(f".{inner}")
        if old in state and old not in predictors:
            state[name] = state.pop(old)
    return state


def _walk_value(value: Any, name: str, seen: set[int]) -> Iterator[tuple[str, Module]]:
    if isinstance(value, Module):
        yield from value._walk(name, seen)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _walk_value(item, f"{name}[{i}]", seen)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk_value(item, f"{name}[{key!r}]", seen)
