"""``Predict``: one model call that fills a signature's output fields.

The data flow of a call: check the inputs, let the adapter format the
request, ask the model, let the adapter parse the response into typed
values. A completion that does not parse is shown back to the model with the
error, up to ``max_parse_retries`` times, before ``AdapterParseError``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ..adapters.base import Adapter
from ..adapters.chat import ChatAdapter
from ..errors import AdapterParseError, StructuringError, TrioDSPyError
from ..lm.base import BaseLM
from ..messages import LMRequest
from ..primitives import Example, Prediction, Usage
from ..settings import Settings, current, resolve_lm
from ..signature import Signature, ensure_signature
from ..stream_listener import predictor_stream, status
from ..telemetry.span import AttributeValue, current_span
from ..trace import record as record_trace
from ..types import structure, unstructure
from .module import Module, Predictor

__all__ = ["Predict", "check_inputs", "resolve_adapter"]


_DEFAULT_ADAPTER = ChatAdapter()


def resolve_adapter(pinned: Adapter | None, settings: Settings) -> Adapter:
    """The adapter a call uses: the pinned one, the settings', else ``ChatAdapter``."""
    return pinned or settings.adapter or _DEFAULT_ADAPTER


def check_inputs(owner: object, signature: type[Signature], inputs: Mapping[str, Any]) -> None:
    """Raise ``TypeError`` naming unknown and missing input fields of ``signature``.

    An unknown name close to a missing one is suggested as its spelling
    (``got unknown input field reqest (did you mean request?)``).
    """
    where = f"{type(owner).__name__}({signature.__name__})"
    expected = signature.input_fields
    unknown = [n for n in inputs if n not in expected]
    missing = [n for n in expected if n not in inputs]
    if not unknown and not missing:
        return
    parts = []
    if unknown:
        parts.append(
            "got unknown input field(s) "
            + ", ".join(_with_suggestion(n, missing or list(expected)) for n in unknown)
        )
    if missing:
        parts.append(f"missing required input field(s): {', '.join(missing)}")
    raise TypeError(f"{where} {'; '.join(parts)}; inputs are {', '.join(expected)}")


def _with_suggestion(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    return f"{name} (did you mean {close[0]}?)" if close else name


class Predict(Module, Predictor):
    """Ask a model for ``signature``'s outputs (a :class:`~trio_dspy.modules.module.Predictor`).

    ::

        qa = td.Predict("question -> answer: float", temperature=0.0)
        pred = await qa(question="What is 0.1 + 0.2?")
        pred.answer  # 0.3 (a float)

    Args:
        signature: a :class:`~trio_dspy.Signature` subclass or a string spec.
        **lm_kwargs: sampling parameters for this predictor's calls
            (``temperature``, ``max_tokens``, ...), over the settings' ``lm_kwargs``.

    Attributes:
        demos: few-shot examples (:class:`~trio_dspy.Example` or dicts).
        lm: a model pinned to this predictor; ``None`` uses the settings' model.
        adapter: an adapter pinned to this predictor; ``None`` uses the settings'.
    """

    def __init__(self, signature: str | type[Signature], **lm_kwargs: Any) -> None:
        self.signature = ensure_signature(signature)
        self.lm_kwargs = lm_kwargs
        self.demos: list[Mapping[str, Any]] = []
        self.lm: BaseLM | None = None
        self.adapter: Adapter | None = None

    if TYPE_CHECKING:  # what a call returns, for type checkers (Module.__call__ runs it)

        async def __call__(self, **inputs: Any) -> Prediction: ...

    def reset(self) -> None:
        """Forget learned state (demos)."""
        self.demos = []

    async def forward(self, **inputs: Any) -> Prediction:
        """Call the model and return the typed outputs as a :class:`Prediction`.

        Raises:
            TypeError: an input field is missing or unknown.
            ConfigurationError: no model is configured.
            AdapterParseError: the model's answer did not parse, after retries;
                ``completion`` holds the last raw answer.
            trio_dspy.errors.LMError: the model call failed.
        """
        check_inputs(self, self.signature, inputs)
        settings = current()
        lm = resolve_lm(self.lm, settings)
        adapter = resolve_adapter(self.adapter, settings)
        request = adapter.format_request(
            self.signature, self.demos, inputs, params={**settings.lm_kwargs, **self.lm_kwargs}
        )
        prediction = await self._ask(lm, adapter, request, settings)
        record_trace(self, inputs, prediction)
        return prediction

    async def _ask(
        self, lm: BaseLM, adapter: Adapter, request: LMRequest, settings: Settings
    ) -> Prediction:
        retries = settings.max_parse_retries
        usage = Usage()
        messages = list(request.messages)
        # Inside streamify, listened fields are read as the model writes them.
        # Only the first answer is streamed: a re-ask's text may not continue
        # the chunks already sent (``PredictorStream.complete`` sends the rest
        # when it does).
        streaming = predictor_stream(self)
        for attempt in range(1, retries + 2):
            attempt_request = attrs.evolve(request, messages=messages)
            if streaming is not None and attempt == 1:
                response = await streaming.request(
                    lm,
                    adapter,
                    self.signature,
                    attempt_request,
                    trace_content=settings.trace_content,
                )
            else:
                response = await lm.request(attempt_request, trace_content=settings.trace_content)
            usage.add(response.usage)
            try:
                values = adapter.parse_response(self.signature, response)
            except AdapterParseError as exc:
                exc.attempts = attempt
                span = current_span()
                if span is not None:
                    span.add_event(
                        "parse_error",
                        {"attempt": attempt, "adapter": exc.adapter, "error": exc.args[0]},
                    )
                if attempt > retries:
                    raise
                messages.extend(adapter.format_retry(response.text, exc, self.signature))
                if streaming is not None:
                    await status(f"{streaming.name}: the answer did not parse, asking again")
                continue
            if streaming is not None:
                await streaming.complete(values)
            return Prediction.from_completions(values, usage)
        raise AssertionError("unreachable")  # pragma: no cover

    # ---------------------------------------------------------------- saved state
    def dump_predictor_state(self) -> dict[str, Any]:
        """Instructions, field descriptions and demos as JSON-ready data."""
        fields = self.signature.fields
        return {
            "signature": self.signature.__name__,
            "instructions": self.signature.instructions,
            "fields": {n: {"desc": f.desc, "prefix": f.prefix} for n, f in fields.items()},
            "demos": [
                {
                    k: unstructure(v, fields[k].annotation if k in fields else Any)
                    for k, v in d.items()
                }
                for d in self.demos
            ],
        }

    def parse_predictor_state(self, state: Any) -> tuple[type[Signature], list[Example]]:
        """Validate saved state against this predictor's signature.

        Raises:
            TrioDSPyError: the state is malformed, was saved from a signature
                with other fields (the message names them), or a demo value
                does not fit its type.
        """
        if not isinstance(state, Mapping) or not isinstance(state.get("demos"), list):
            raise TrioDSPyError(f"malformed predictor state: {state!r}")
        sig = self.signature
        if isinstance(state.get("instructions"), str):
            sig = sig.with_instructions(state["instructions"])
        fields = state.get("fields") or {}
        if not isinstance(fields, Mapping):
            raise TrioDSPyError(
                f"malformed predictor state: 'fields' must be an object: {fields!r}"
            )
        if "fields" in state:
            _check_same_fields(sig, fields)
        for name, info in fields.items():
            if name in sig.fields and isinstance(info, Mapping):
                changes = {k: info[k] for k in ("desc", "prefix") if isinstance(info.get(k), str)}
                sig = sig.with_updated_field(name, **changes)
        demos = []
        for i, raw in enumerate(state["demos"]):
            if not isinstance(raw, Mapping):
                raise TrioDSPyError(f"demo {i} is not an object: {raw!r}")
            values = {}
            for k, v in raw.items():
                field = sig.fields.get(k)
                try:
                    values[k] = structure(v, field.annotation, path=k) if field else v
                except StructuringError as exc:
                    raise TrioDSPyError(f"demo {i}: {exc}") from None
            demos.append(Example(values))
        return sig, demos

    def apply_predictor_state(self, parsed: tuple[type[Signature], list[Example]]) -> None:
        """Install state produced by :meth:`parse_predictor_state`."""
        self.signature, self.demos = parsed[0], list(parsed[1])

    def _span_name(self) -> str:
        return f"{type(self).__name__} {self.signature.__name__}"

    def _span_attributes(self) -> dict[str, AttributeValue | None]:
        return {
            "trio_dspy.module": type(self).__name__,
            "trio_dspy.signature": self.signature.__name__,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.signature!r})"


def _check_same_fields(sig: type[Signature], saved: Mapping[str, Any]) -> None:
    """Refuse state saved from a signature whose fields differ from ``sig``'s.

    Raises:
        TrioDSPyError: naming the fields only one side has.
    """
    missing = [n for n in sig.fields if n not in saved]
    extra = [str(n) for n in saved if n not in sig.fields]
    if missing or extra:
        parts = [
            f"lacks field(s) {', '.join(missing)}" if missing else "",
            f"has field(s) {', '.join(extra)} that {sig.__name__} does not" if extra else "",
        ]
        raise TrioDSPyError(
            f"saved state is for another signature: it {' and '.join(p for p in parts if p)}"
        )
