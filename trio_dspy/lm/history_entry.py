"""One call kept in a model's history, readable as DSPy's history entries are.

DSPy keeps each call as a dict (``lm.history[-1]["cost"]``); an entry here
is a frozen record with the request and the response, and answers DSPy's
keys too, so code that reads a DSPy history ports unchanged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from ..messages import LMRequest, LMResponse, loggable

__all__ = ["HistoryEntry"]


_FIELDS = ("request", "response", "started_at", "duration", "provider", "model_name")


class HistoryEntry:
    """One call kept in a model's ``history`` (``lm.history``).

    ``entry.cost`` is what the call cost in US dollars, as the server reported
    it (OpenRouter's ``usage.cost``, a LiteLLM proxy's response-cost header)
    or, when it reported none, as the prices table prices it: looked up when
    read, so a call nobody asks the cost of is never priced. ``None`` when
    unknown or a cache hit.
    ``entry["cost"]``, ``entry["messages"]``, ``entry["outputs"]`` and DSPy's
    other keys (:meth:`keys`) read the same call as DSPy's dict does.

    Read-only (its fields are properties over slots), compared and hashed by
    its fields. A plain slotted class: one is built per call, and a frozen
    attrs class's guarded setters cost a microsecond of it.
    """

    __slots__ = ("_duration", "_model_name", "_provider", "_request", "_response", "_started_at")

    def __init__(
        self,
        request: LMRequest,
        response: LMResponse,
        started_at: float,
        duration: float,
        provider: str = "",
        model_name: str = "",
    ) -> None:
        self._request = request
        self._response = response
        self._started_at = started_at  # wall clock (time.time())
        self._duration = duration  # seconds
        self._provider = provider
        self._model_name = model_name

    @property
    def request(self) -> LMRequest:
        """The request the call sent."""
        return self._request

    @property
    def response(self) -> LMResponse:
        """The response the call got."""
        return self._response

    @property
    def started_at(self) -> float:
        """When the call started, wall clock (``time.time()``)."""
        return self._started_at

    @property
    def duration(self) -> float:
        """How long the call took, in seconds."""
        return self._duration

    @property
    def provider(self) -> str:
        """The provider that made the call, as the prices table knows it (or ``""``)."""
        return self._provider

    @property
    def model_name(self) -> str:
        """The model's name, which with ``provider`` prices a call whose server
        reported no cost (or ``""``)."""
        return self._model_name

    def _fields(self) -> tuple[Any, ...]:
        return (
            self._request,
            self._response,
            self._started_at,
            self._duration,
            self._provider,
            self._model_name,
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not HistoryEntry:
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={value!r}" for name, value in zip(_FIELDS, self._fields()))
        return f"HistoryEntry({values})"

    @property
    def cost(self) -> float | None:
        """The call's cost in US dollars, ``None`` when unknown (see :mod:`.prices`).

        The first read of a cost the server did not report may load the
        prices table (the ``prices`` extra). Raises nothing.
        """
        if not self.provider or self.response.usage.cost is not None:
            return self.response.usage.cost
        from .prices import response_cost

        return response_cost(self.provider, self.model_name, self.response)

    def __getitem__(self, key: str) -> Any:
        """The value DSPy's history entry has under ``key``.

        Raises:
            KeyError: ``key`` is none of :meth:`keys`; the message lists them.
        """
        read = _DSPY_KEYS.get(key)
        if read is None:
            raise KeyError(
                f"a history entry has no {key!r}: use one of {', '.join(sorted(_DSPY_KEYS))} "
                "(or the attributes request, response, cost, started_at, duration)"
            )
        return read(self)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is one of DSPy's keys (``"cost" in entry``)."""
        return key in _DSPY_KEYS

    def get(self, key: str, default: Any = None) -> Any:
        """``entry[key]``, or ``default`` for a key DSPy's entries do not have."""
        return self[key] if key in _DSPY_KEYS else default

    def keys(self) -> list[str]:
        """DSPy's keys this entry answers (``entry[key]``)."""
        return sorted(_DSPY_KEYS)


def _usage(entry: HistoryEntry) -> dict[str, int]:
    usage = entry.response.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


_DSPY_KEYS: dict[str, Callable[[HistoryEntry], Any]] = {
    "prompt": lambda e: None,  # DSPy's is None for a chat call, which every call here is
    "messages": lambda e: [loggable(m) for m in e.request.messages],
    "kwargs": lambda e: dict(e.request.params),
    "response": lambda e: e.response,
    "outputs": lambda e: [e.response.text],
    "usage": _usage,
    "cost": lambda e: e.cost,
    "timestamp": lambda e: dt.datetime.fromtimestamp(e.started_at).isoformat(),
    "response_model": lambda e: e.response.model,
}
