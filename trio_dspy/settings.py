"""Configuration: process-wide defaults and per-task overrides.

:func:`configure` sets the process-wide defaults. :func:`context` overrides
them for the current task *and the tasks it spawns while the override is in
force*; siblings and the parent never see it. The overrides live in a
:class:`contextvars.ContextVar`, and trio gives every new task a copy of its
spawner's context, which is exactly that scoping rule.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs

from .errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .adapters.base import Adapter
    from .journal.store import ApprovalRequest, Decision
    from .lm.base import BaseLM

__all__ = ["Settings", "configure", "context", "current", "resolve_lm"]


@attrs.frozen
class Settings:
    """The settings in force for a call. Read them with :func:`current`.

    Attributes:
        lm: the language model modules call when they have none of their own.
        adapter: the wire format (``None`` means :class:`~trio_dspy.ChatAdapter`).
        max_parse_retries: how often ``Predict`` re-asks a model whose answer
            does not parse before raising ``AdapterParseError``.
        lm_kwargs: sampling parameters (``temperature=...``) for every call.
        trace_content: record prompts and completions in telemetry spans.
        propagate_trace: send the W3C ``traceparent`` (and ``tracestate``)
            header of the current span with every HTTP request to a model,
            so the provider's own tracing can join the trace.
        approver: decides calls to tools made with ``requires_approval=True``:
            ``async fn(request) -> bool | td.journal.Decision`` (see
            :mod:`trio_dspy.journal.approval`); ``None``: such a call stops the run.
    """

    lm: BaseLM | None = None
    adapter: Adapter | None = None
    max_parse_retries: int = attrs.field(default=2, validator=attrs.validators.ge(0))
    lm_kwargs: dict[str, Any] = attrs.field(factory=dict)
    trace_content: bool = False
    propagate_trace: bool = True
    approver: Callable[[ApprovalRequest], Awaitable[bool | Decision]] | None = None


_FIELDS = frozenset(a.name for a in attrs.fields(Settings))
_global = Settings()
# The overrides of the calling task, kept apart from the global defaults so
# that configure() called later still shows through fields never overridden.
_overrides: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "trio_dspy.settings", default=MappingProxyType({})
)


# DSPy settings that are not settings here, and what to write instead.
_DSPY_SETTINGS = {
    "track_usage": "wrap the calls in `with td.track_usage() as usage:`",
    "num_threads": "give limit= to module.batch, td.Evaluate, td.Parallel or the optimizer",
    "max_errors": "give max_errors= to td.Evaluate or td.Parallel",
    "async_max_workers": "calls are trio tasks: bound them with limit= (td.gather, batch)",
    "callbacks": "observe calls through spans: td.telemetry.collect(...)",
    "provide_traceback": "failures keep their exceptions; turn on logging for 'trio_dspy'",
    "allow_tool_async_sync_conversion": (
        "tools, sync or async, are always awaited here: write `await tool(x=5)`"
    ),
}


def _reject_unknown_settings(settings: dict[str, Any]) -> None:
    for name in settings:
        if name in _DSPY_SETTINGS:
            raise TypeError(f"{name} is a DSPy setting, not one here: {_DSPY_SETTINGS[name]}")
    unknown = sorted(set(settings) - _FIELDS)
    if unknown:
        raise TypeError(
            f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}"
        )


def configure(**settings: Any) -> None:
    """Set process-wide defaults, e.g. ``td.configure(lm=td.LM("openai/gpt-4o-mini"))``.

    Tasks inside a :func:`context` still see their overrides on top.

    Raises:
        TypeError: a name is not a setting.
        ValueError: a value is out of range (``max_parse_retries < 0``).
    """
    global _global
    _reject_unknown_settings(settings)
    _global = attrs.evolve(_global, **settings)


def current() -> Settings:
    """The settings in force for the calling task."""
    overrides = _overrides.get()
    return attrs.evolve(_global, **overrides) if overrides else _global


@contextmanager
def context(**overrides: Any) -> Iterator[Settings]:
    """Override settings for this task and the tasks it spawns inside the block.

    ::

        with td.context(lm=gpt4, lm_kwargs={"temperature": 0.0}):
            await agent(request=...)

    A child task keeps the overrides that were in force when it was spawned,
    even if the parent leaves the block first. Yields the effective settings.

    Raises:
        TypeError: a name is not a setting.
        ValueError: a value is out of range.
    """
    _reject_unknown_settings(overrides)
    merged = {**_overrides.get(), **overrides}
    effective = attrs.evolve(_global, **merged)  # validates the values now
    token = _overrides.set(merged)
    try:
        yield effective
    finally:
        _overrides.reset(token)


def resolve_lm(
    pinned: BaseLM | None = None,
    settings: Settings | None = None,
    *,
    pin_hint: str = "set predictor.lm",
) -> BaseLM:
    """The model a call uses: the one ``pinned`` to the caller, else the settings' ``lm``.

    ``settings`` defaults to :func:`current`; ``pin_hint`` ends the error
    message with how to pin a model to the caller (``"set agent.react.lm"``).

    Raises:
        ConfigurationError: no model is pinned or configured; the message says
            how to configure one.
    """
    if pinned is not None:
        return pinned
    lm = (settings or current()).lm
    if lm is None:
        raise ConfigurationError(
            "no language model configured: use td.configure(lm=td.LM('openai/...')), "
            f"td.context(lm=...), or {pin_hint}"
        )
    return lm


def __getattr__(name: str) -> Any:
    """DSPy's ``dspy.settings.lm``: a setting read from this module is its current value.

    ``td.settings.lm`` is ``current().lm`` for the calling task (overrides of
    :func:`context` included).

    Raises:
        AttributeError: ``name`` is no setting.
    """
    if name in _FIELDS:
        return getattr(current(), name)
    raise AttributeError(
        f"module {__name__!r} has no attribute {name!r}; settings are "
        f"{', '.join(sorted(_FIELDS))} (read with td.settings.<name> or current())"
    )
