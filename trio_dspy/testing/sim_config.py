"""How the simulated server behaves: latency, faults, capabilities, scripts.

Everything here is plain configuration (frozen attrs classes); the server in
:mod:`trio_dspy.testing.sim_server` reads it. Randomness is seeded, so a run
with the same seed and the same request order behaves the same.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal, get_args

import attrs

from .sim_answers import SimReply, read_request
from .sim_embeddings import DEFAULT_DIMENSIONS
from .sim_profiles import SimProfile, get_profile

__all__ = ["Fault", "FaultKind", "Latency", "Script", "SimConfig", "keyword_script"]

Body = Mapping[str, Any]
Script = Callable[[Body], "SimReply | Awaitable[SimReply | None] | None"]
FaultKind = Literal[
    "rate_limit",  # 429 with Retry-After (and retry-after-ms if asked)
    "server_error",  # 500
    "unavailable",  # 503 (with Retry-After when set)
    "reset",  # the connection is aborted without an answer
    "stall",  # wait ``stall`` seconds, then answer normally
    "malformed",  # 200 with a body that is not valid JSON
    "truncate",  # half the content, finish_reason "length" (embeddings: the last one missing)
    "context_length",  # 400 with code context_length_exceeded
    "stream_reset",  # a stream's connection is aborted after ``after`` events
    "stream_stall",  # a stream stops for ``stall`` seconds after ``after`` events
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)


@attrs.frozen
class Latency:
    """How long the server waits (``trio.sleep``) before answering.

    Build one with :meth:`constant`, :meth:`uniform`, :meth:`lognormal` or
    :meth:`function`, or from text with :meth:`parse`.
    """

    kind: Literal["constant", "uniform", "lognormal", "function"] = "constant"
    a: float = 0.0
    b: float = 0.0
    fn: Callable[[Body], float] | None = attrs.field(default=None, eq=False)

    @classmethod
    def constant(cls, seconds: float) -> Latency:
        """Always ``seconds``."""
        return cls("constant", float(seconds))

    @classmethod
    def uniform(cls, lo: float, hi: float) -> Latency:
        """Uniformly distributed in ``[lo, hi]``.

        Raises:
            ValueError: ``lo > hi`` or a bound is negative.
        """
        if not 0 <= lo <= hi:
            raise ValueError(f"uniform latency needs 0 <= lo <= hi, got lo={lo}, hi={hi}")
        return cls("uniform", float(lo), float(hi))

    @classmethod
    def lognormal(cls, median: float, sigma: float) -> Latency:
        """Log-normally distributed around ``median`` with shape ``sigma`` (long tail).

        Raises:
            ValueError: ``median`` is not positive or ``sigma`` is negative.
        """
        if median <= 0 or sigma < 0:
            raise ValueError(f"lognormal latency needs median > 0 and sigma >= 0, got {median}")
        return cls("lognormal", float(median), float(sigma))

    @classmethod
    def function(cls, fn: Callable[[Body], float]) -> Latency:
        """Whatever ``fn(request_body)`` returns (seconds)."""
        return cls("function", fn=fn)

    @classmethod
    def parse(cls, text: str) -> Latency:
        """``"0.5"``, ``"uniform:0.1,0.5"`` or ``"lognormal:0.3,0.6"`` (median, sigma).

        Raises:
            ValueError: the text is not one of those forms.
        """
        kind, _, args = text.partition(":")
        try:
            if not args:
                return cls.constant(float(kind))
            lo, hi = (float(x) for x in args.split(","))
        except ValueError:
            raise ValueError(
                f"cannot read latency {text!r}: "
                "use SECONDS, uniform:LO,HI or lognormal:MEDIAN,SIGMA"
            ) from None
        if kind == "uniform":
            return cls.uniform(lo, hi)
        if kind == "lognormal":
            return cls.lognormal(lo, hi)
        raise ValueError(f"unknown latency kind {kind!r}: use uniform or lognormal")

    def sample(self, body: Body, rng: random.Random) -> float:
        """One delay in seconds (never negative)."""
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        if self.kind == "lognormal":
            return self.a * math.exp(rng.gauss(0.0, self.b))
        if self.kind == "function" and self.fn is not None:
            return max(0.0, float(self.fn(body)))
        return self.a


def _to_latency(value: float | Latency | Callable[[Body], float]) -> Latency:
    if isinstance(value, Latency):
        return value
    if isinstance(value, int | float):
        return Latency.constant(value)
    if callable(value):
        return Latency.function(value)
    raise TypeError(f"latency must be seconds, a Latency or a function of the body: {value!r}")


def _check_kind(_: Any, __: Any, kind: str) -> None:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}: use one of {', '.join(FAULT_KINDS)}")


@attrs.frozen
class Fault:
    """A fault injected into the requests a rule selects.

    Selectors (all that are set must hold; none set selects every request),
    counting completion requests from 1 in arrival order:

    * ``every=k``: the k-th, 2k-th, 3k-th ... request (``every=2``: every other);
    * ``first=n``: requests 1..n;
    * ``probability=p``: each request with probability ``p`` (seeded by
      the server's seed and the request number, so runs repeat);
    * ``when=fn``: requests whose JSON body makes ``fn(body)`` true.

    ``retry_after`` (seconds, ``None`` for no header) goes into ``Retry-After``
    on 429/503, and ``retry_after_ms=True`` adds ``retry-after-ms``;
    ``stall`` is the wait of a ``"stall"`` (or ``"stream_stall"``) fault;
    ``after`` the events a stream sends before a ``"stream_*"`` fault.

    Raises:
        ValueError: unknown ``kind`` or a selector out of range.
    """

    kind: FaultKind = attrs.field(validator=_check_kind)
    every: int | None = None
    first: int | None = None
    probability: float | None = None
    when: Callable[[Body], bool] | None = attrs.field(default=None, eq=False)
    retry_after: float | None = 1.0
    retry_after_ms: bool = False
    stall: float = 60.0
    after: int = 2

    def __attrs_post_init__(self) -> None:
        if self.every is not None and self.every < 1:
            raise ValueError(f"Fault(every=...) must be >= 1, got {self.every}")
        if self.first is not None and self.first < 0:
            raise ValueError(f"Fault(first=...) must be >= 0, got {self.first}")
        if self.probability is not None and not 0 <= self.probability <= 1:
            raise ValueError(f"Fault(probability=...) must be in [0, 1], got {self.probability}")

    def selects(self, number: int, body: Body, seed: int) -> bool:
        """Whether request ``number`` (1-based) with ``body`` gets this fault."""
        if self.every is not None and number % self.every:
            return False
        if self.first is not None and number > self.first:
            return False
        if self.probability is not None:
            draw = random.Random(f"{seed}:{self.kind}:{number}").random()
            if draw >= self.probability:
                return False
        return self.when is None or bool(self.when(body))

    @classmethod
    def parse(cls, text: str) -> Fault:
        """``KIND[:key=value,...]``, e.g. ``"rate_limit:every=2,retry_after=0.5"``.

        Keys: ``every``, ``first``, ``probability``, ``retry_after``
        (``none`` for no header), ``retry_after_ms`` (0/1), ``stall``, ``after``.

        Raises:
            ValueError: unknown kind or key, or a value that is not a number.
        """
        kind, _, rest = text.partition(":")
        kw: dict[str, Any] = {}
        for item in filter(None, rest.split(",")):
            key, _, raw = item.partition("=")
            key, raw = key.strip(), raw.strip()
            parse = _FAULT_OPTIONS.get(key)
            if parse is None:
                options = ", ".join(_FAULT_OPTIONS)
                raise ValueError(f"unknown fault option {key!r} in {text!r}: use {options}")
            try:
                kw[key] = parse(raw)
            except ValueError:
                raise ValueError(
                    f"fault option {key}={raw!r} in {text!r} is not a number"
                ) from None
        return cls(kind.strip(), **kw)  # type: ignore[arg-type]


_FAULT_OPTIONS: dict[str, Callable[[str], Any]] = {
    "every": int,
    "first": int,
    "probability": float,
    "stall": float,
    "after": int,
    "retry_after": lambda raw: None if raw.lower() == "none" else float(raw),
    "retry_after_ms": lambda raw: raw.lower() in ("1", "true", "yes"),
}


def _faults(value: Iterable[Fault]) -> tuple[Fault, ...]:
    return tuple(value)


@attrs.frozen
class SimConfig:
    """Everything about how a simulated server behaves.

    * ``latency``: seconds, a :class:`Latency`, or a function of the body;
    * ``seed``: seeds latency draws, probabilistic faults and generated answers
      (answers are also keyed on the request body, so the same request gets
      the same answer);
    * ``faults``: :class:`Fault` rules, first match wins;
    * ``script``: ``fn(body) -> SimReply | None`` (may be async), ``None`` falls
      back to a generated answer; see :func:`keyword_script`;
    * ``api_key``: when set, requests must carry ``Authorization: Bearer KEY``
      (or ``x-api-key: KEY`` on ``/v1/messages``), else 401;
    * ``supports_json_schema`` / ``supports_json_object`` / ``supports_tools``:
      when false, such requests get a 400 naming the refused parameter;
    * ``context_window``: prompts above this many tokens (chars / 4) get a
      400 ``context_length_exceeded``;
    * ``keep_requests``: how many request bodies :attr:`SimServer.requests` keeps;
    * ``models``: the ids ``GET /v1/models`` lists;
    * ``profile``: a server to imitate (``"ollama"``, ``"lmstudio"``, ``"vllm"``,
      ``"llamacpp"``, ``"groq"``, ``"gemini"`` or a
      :class:`~trio_dspy.testing.sim_profiles.SimProfile`): its refusals, error
      bodies and usage on ``/v1/chat/completions``. An unknown name raises
      ``ValueError``.
    * ``stream_chunk_chars`` / ``stream_delay``: a streamed answer's pieces
      of text (characters) and the seconds between its events.
    * ``embedding_dimensions``: the length of the vectors ``/v1/embeddings``
      serves when a request does not ask for ``dimensions``.
    """

    latency: Latency = attrs.field(factory=Latency, converter=_to_latency)
    seed: int = 0
    faults: tuple[Fault, ...] = attrs.field(default=(), converter=_faults)
    script: Script | None = attrs.field(default=None, eq=False)
    api_key: str | None = attrs.field(default=None, repr=False)
    supports_json_schema: bool = True
    supports_json_object: bool = True
    supports_tools: bool = True
    context_window: int | None = None
    keep_requests: int = 1000
    models: tuple[str, ...] = ("sim-model",)
    profile: SimProfile | None = attrs.field(default=None, converter=get_profile)
    stream_chunk_chars: int = attrs.field(default=16, validator=attrs.validators.ge(1))
    stream_delay: float = attrs.field(default=0.0, validator=attrs.validators.ge(0))
    embedding_dimensions: int = attrs.field(
        default=DEFAULT_DIMENSIONS, validator=attrs.validators.ge(1)
    )


ScriptAnswer = SimReply | str | Mapping[str, Any]


def keyword_script(
    replies: Mapping[str, ScriptAnswer], *, default: ScriptAnswer | None = None
) -> Script:
    """A script that answers by keyword found in the last user message.

    Keys are matched case-insensitively, in order; the first one found picks
    the reply. A reply is a :class:`SimReply`, a string (sent as the
    completion text) or a dict of output field values (rendered in the
    format the request asks for). Without a match, ``default`` is used, or a
    generated answer when ``default`` is ``None``.
    """
    table = [(k.lower(), _as_reply(v)) for k, v in replies.items()]
    fallback = _as_reply(default) if default is not None else None

    def script(body: Body) -> SimReply | None:
        try:  # the last user message reads the same in both dialects
            text = read_request(body, "openai").last_user.lower()
        except ValueError:
            return fallback
        for key, reply in table:
            if key in text:
                return reply
        return fallback

    return script


def _as_reply(value: ScriptAnswer) -> SimReply:
    if isinstance(value, SimReply):
        return value
    if isinstance(value, str):
        return SimReply(text=value)
    return SimReply(outputs=dict(value))
