"""``Predict``: one model call that fills a signature's output fields.

The data flow of a call: check the inputs, let the adapter format the
request, ask the model, let the adapter parse the response into typed
values. A completion that does not parse is re-asked, up to
``max_parse_retries`` times, before ``AdapterParseError``: the first re-ask
after a ``ChatAdapter`` failure is the ``JSONAdapter`` request in
structured-output mode (the adapter's ``structured_fallback()``);
the others show the model its error. A two-step adapter's answer is not
parsed: the adapter's ``extraction()`` names a second request, to another
model, that reads the outputs out of it, and ``Predict`` sends that too
(:mod:`~trio_dspy.adapters.two_step`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import attrs
import trio

from ..adapters.base import Adapter, Extraction
from ..adapters.chat import ChatAdapter
from ..aliases import refuse_dspy_keywords
from ..checkpoint import entering, yielded_since
from ..concurrency import gather
from ..errors import AdapterParseError, StructuringError, TrioDSPyError
from ..lm.base import BaseLM
from ..messages import LMRequest, LMResponse, Message, TextPart
from ..primitives import Example, Prediction, Usage
from ..settings import Settings, current, resolve_lm
from ..signature import Signature, ensure_signature
from ..stream_listener import heard, lm_status, predictor_stream, status
from ..telemetry.span import AttributeValue, current_span
from ..trace import record as record_trace
from ..types import structure, unstructure
from . import format_memory
from .input_check import check_inputs
from .module import Module, Predictor

__all__ = ["Predict", "check_inputs", "resolve_adapter"]


_DEFAULT_ADAPTER = ChatAdapter()


def resolve_adapter(pinned: Adapter | None, settings: Settings) -> Adapter:
    """The adapter a call uses: the pinned one, the settings', else ``ChatAdapter``."""
    return pinned or settings.adapter or _DEFAULT_ADAPTER


# DSPy's Predict and ChainOfThought keywords that have no counterpart here.
DSPY_ONLY = {
    "callbacks": "observe calls through spans (td.telemetry.collect)",
    "rationale_field": "the reasoning field is always `reasoning: str`; declare another "
    "output field in the signature for more",
    "rationale_field_type": "the reasoning field is always `reasoning: str`",
}


class _Call(NamedTuple):
    """What every model call of one ``Predict`` call shares (a tuple: built on every call)."""

    lm: BaseLM
    adapter: Adapter
    settings: Settings
    inputs: Mapping[str, Any]


def _completions_wanted(params: Mapping[str, Any], lm: BaseLM) -> int:
    """How many completions a call asks for: ``n`` in its params or the LM's defaults.

    Raises:
        ValueError: ``n`` is not a positive integer.
    """
    n = params.get("n", lm.defaults.get("n"))
    if n is None:
        return 1
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n (the number of completions) must be a positive integer, got {n!r}")
    return n


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
        # DSPy's own keywords would otherwise be sent to the model as parameters.
        refuse_dspy_keywords(f"td.{type(self).__name__}", lm_kwargs, DSPY_ONLY)
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
            trio.Cancelled: the enclosing scope is cancelled (checked on entry).
        """
        # A checkpoint of its own, for a caller that awaits forward directly:
        # the model is asked without one (request_nested). Inside a module
        # call this costs a cancellation check, not a second yield.
        mark = await entering()
        check_inputs(self, self.signature, inputs)
        settings = current()
        lm = resolve_lm(self.lm, settings)
        adapter = self.adapter or settings.adapter or _DEFAULT_ADAPTER  # resolve_adapter, inlined
        structured = adapter.structured_fallback()
        if structured is not None and format_memory.prefers_structured(lm):
            adapter = structured  # this model keeps losing the text format
        request = adapter.format_request(
            self.signature, self.demos, inputs, params={**settings.lm_kwargs, **self.lm_kwargs}
        )
        call = _Call(lm, adapter, settings, inputs)
        params = request.params
        # One completion unless ``n`` is set somewhere: checked only when it is.
        n = (
            1
            if params.get("n") is None and lm.defaults.get("n") is None
            else _completions_wanted(params, lm)
        )
        if n == 1:
            completions, usage = await self._ask(call, request)
        else:
            completions, usage = await self._ask_n(call, request, n)
        prediction = Prediction.from_completions(completions[0], usage, completions)
        record_trace(self, inputs, prediction)
        if not yielded_since(mark):  # a cache hit or an in-process model waited for nothing
            await trio.lowlevel.cancel_shielded_checkpoint()
        return prediction

    async def _ask_n(
        self, call: _Call, request: LMRequest, n: int
    ) -> tuple[list[dict[str, Any]], Usage]:
        """``n`` completions: one request where the model takes ``n``, else ``n`` at once.

        Completions missing from the answer (the server ignored ``n``, or some
        did not parse) are asked for with separate calls, all at once. None
        of them streams inside :func:`~trio_dspy.streamify`: a stream carries
        one completion, and the rest would be paid for twice.
        """
        completions: list[dict[str, Any]] = []
        usage = Usage()
        if call.lm.supports_n:
            completions, usage = await self._ask(call, request, stream=False)
        missing = n - len(completions)
        if missing > 0:
            # A provider without ``n`` (Anthropic), a server that ignored it, or
            # completions that did not parse: the rest are separate calls, all at
            # once (DSPy makes them one by one); each its own rollout, so that a
            # cache does not answer them all alike.
            single = attrs.evolve(request, params={**request.params, "n": None})
            calls = [
                partial(self._ask, call, attrs.evolve(single, rollout_id=i), stream=False)
                for i in range(missing)
            ]
            for values, used in await gather(*calls):
                completions += values
                usage.add(used)
        return completions[:n], usage

    async def _ask(
        self, call: _Call, request: LMRequest, *, stream: bool = True
    ) -> tuple[list[dict[str, Any]], Usage]:
        """One completion (or several, with ``n``), re-asked when it does not parse.

        Inside :func:`~trio_dspy.streamify` the first answer is streamed unless
        ``stream`` is false (the extra calls that top up ``n`` completions).
        """
        lm, adapter, settings = call.lm, call.adapter, call.settings
        retries = settings.max_parse_retries
        usage: Usage | None = None
        messages: list[Message] | None = None  # a re-ask's longer conversation
        rescued = False
        # Inside streamify, listened fields are read as the model writes them.
        # Only the first answer is streamed: a re-ask's text may not continue
        # the chunks already sent (``PredictorStream.complete`` sends the rest
        # when it does).
        listened = heard()  # a streamed run listens to this task (it stays so)
        streaming = predictor_stream(self) if stream and listened else None
        # Inside this module call (a checkpoint), BaseLM's own request need not
        # be one too; an LM that defines its own request is asked through it.
        ask = lm.request
        if getattr(ask, "__func__", None) is BaseLM.request:
            ask = lm.request_nested
        for attempt in range(1, retries + 2):
            # ``messages`` only grows (re-asks): unchanged, the request is sent as it is.
            attempt_request = (
                request
                if messages is None or len(messages) == len(request.messages)
                else attrs.evolve(request, messages=messages)
            )
            if listened:  # a stream's provider's line, before and after
                await lm_status(lm, attempt_request)
            if streaming is not None and attempt == 1:
                response = await streaming.request(
                    lm,
                    adapter,
                    self.signature,
                    attempt_request,
                    trace_content=settings.trace_content,
                )
            else:
                response = await ask(attempt_request, trace_content=settings.trace_content)
            if listened:
                await lm_status(lm, attempt_request, response)
            used = response.usage
            if usage is None:  # the first answer's, copied: the sum grows in place
                usage = Usage(
                    used.prompt_tokens,
                    used.completion_tokens,
                    used.total_tokens,
                    used.requests,
                    used.cost,
                )
            else:
                usage.add(used)
            extraction = adapter.extraction(self.signature)
            if extraction is not None:
                # A two-step format: another model reads the outputs out of this
                # free answer, with its own re-asks; this model is not asked again.
                values = await self._extract(adapter.name, extraction, response, settings, usage)
                if streaming is not None:
                    await streaming.complete(values[0])
                return values, usage
            try:
                values = self._parse_choices(adapter, response)
            except AdapterParseError as exc:
                exc.attempts = attempt
                fallback = adapter.structured_fallback() if attempt <= retries else None
                span = current_span()
                if span is not None:
                    span.add_event(
                        "parse_error",
                        {
                            "attempt": attempt,
                            "adapter": exc.adapter,
                            "error": exc.args[0],
                            "next_adapter": fallback.name if fallback else None,
                        },
                    )
                if attempt > retries:
                    raise
                if streaming is not None:
                    await status(f"{streaming.name}: the answer did not parse, asking again")
                if fallback is None:
                    if messages is None:
                        messages = list(request.messages)
                    messages.extend(adapter.format_retry(response.text, exc, self.signature))
                    continue
                # A model that lost the text format (small models ramble past the
                # sections) is asked afresh in structured-output mode, as DSPy's
                # ChatAdapter falls back to its JSONAdapter. Only such an answer
                # counts towards asking this model that way first: a value that
                # failed its type says nothing about the format.
                adapter = fallback
                rescued = not isinstance(exc.__cause__, StructuringError)
                request = self._structured_request(call, fallback, request, exc)
                messages = None
                continue
            if rescued:
                format_memory.note_rescued(lm)
            elif adapter.structured_fallback() is not None:
                format_memory.note_parsed(lm)
            if streaming is not None:
                await streaming.complete(values[0])
            return values, usage
        raise AssertionError("unreachable")  # pragma: no cover

    async def _extract(
        self,
        adapter: str,
        extraction: Extraction,
        response: LMResponse,
        settings: Settings,
        usage: Usage,
    ) -> list[dict[str, Any]]:
        """The outputs of each completion of ``response``, read by ``extraction``'s model.

        Each extraction is a call of its own (all at once), re-asked as any
        call when its answer does not parse; its usage is added to ``usage``.

        Raises:
            AdapterParseError: an extraction's answer never parsed; ``completion``
                holds the main model's answer, ``adapter`` names ``adapter``,
                the cause is the extraction's error.
            trio_dspy.errors.LMError: the extraction call failed.
        """
        reader = Predict(extraction.signature)

        async def extract(text: str) -> dict[str, Any]:
            inputs = {extraction.field: text}
            request = extraction.adapter.format_request(extraction.signature, [], inputs)
            call = _Call(extraction.lm, extraction.adapter, settings, inputs)
            try:
                values, used = await reader._ask(call, request, stream=False)
            except AdapterParseError as exc:
                raise AdapterParseError(
                    f"the extraction model's answer did not parse: {exc.args[0]}",
                    completion=text,
                    adapter=adapter,
                    signature=self.signature.__name__,
                    attempts=exc.attempts,
                ) from exc
            usage.add(used)
            return values[0]

        calls = [partial(extract, c.text) for c in response.choices]
        # Collected, not raised by gather: its error would lose the extraction's cause.
        values: list[dict[str, Any]] = []
        for result in await gather(*calls, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result
            values.append(result)
        return values

    def _structured_request(
        self, call: _Call, fallback: Adapter, request: LMRequest, error: AdapterParseError
    ) -> LMRequest:
        """``fallback``'s request for this call, after ``request``'s answer failed with ``error``.

        The LM steps its ``response_format`` down if the server refuses it.
        The failed answer is not shown again, but why it failed is (a
        validator's complaint is worth reading). ``request``'s rollout and
        timeout carry over, so a cache keeps ``n`` completions apart.
        """
        fresh = fallback.format_request(
            self.signature, self.demos, call.inputs, params=request.params
        )
        note = f"An earlier answer could not be used: {error.args[0]}"
        return attrs.evolve(
            fresh,
            messages=_noted(fresh.messages, note),
            rollout_id=request.rollout_id,
            timeout=request.timeout,
        )

    def _parse_choices(self, adapter: Adapter, response: LMResponse) -> list[dict[str, Any]]:
        """The outputs of every completion in ``response`` that parses, in order.

        Raises:
            AdapterParseError: none parses (the first completion's error).
        """
        if not response.alternatives:  # one completion: its error is the error
            return [adapter.parse_response(self.signature, response)]
        parsed: list[dict[str, Any]] = []
        error: AdapterParseError | None = None
        for choice in response.choices:
            try:
                parsed.append(adapter.parse_response(self.signature, choice))
            except AdapterParseError as exc:
                error = error or exc
        if not parsed:
            assert error is not None
            raise error
        return parsed

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
        """Validate saved state against this predictor's signature; change nothing.

        ``state`` is what :meth:`dump_predictor_state` writes: every key
        present, each value of its JSON type, no other key. Demo values are
        read as their fields' types, as a model's answer is (a number in a
        text field is its text).

        Raises:
            StructuringError: a value has the wrong type, a key is missing or
                unknown, or a demo value does not fit its field's type; the
                path names it (``demos[2].answer: ...``).
            TrioDSPyError: the state was saved from a signature with other
                fields (the message names them).
        """
        from .saved_schema import SavedPredict, read  # on first load, not at import

        saved = read(state, SavedPredict)
        sig = self.signature
        _check_same_fields(sig, saved.fields)
        sig = sig.with_instructions(saved.instructions)
        for name, text in saved.fields.items():
            sig = sig.with_updated_field(name, desc=text.desc, prefix=text.prefix)
        demos = []
        for i, raw in enumerate(saved.demos):
            values = {}
            for k, v in raw.items():
                field = sig.fields.get(k)
                values[k] = structure(v, field.annotation, path=f"demos[{i}].{k}") if field else v
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


def _noted(messages: tuple[Message, ...], note: str) -> list[Message]:
    """``messages`` with ``note`` added to the last user message (or as a new one)."""
    last = messages[-1] if messages else None
    if last is None or last.role != "user":
        return [*messages, Message("user", note)]
    if isinstance(last.content, str):
        content: str | tuple[Any, ...] = f"{last.content}\n\n{note}"
    else:
        content = (*last.content, TextPart(note))
    return [*messages[:-1], attrs.evolve(last, content=content)]
