"""``ReAct``: an agent that reasons, calls tools, observes, and finally answers.

Two ways to talk to the model:

* **native** (default when the model supports tools): the tools are sent as
  tool definitions; the model may ask for several in one turn, and they run
  concurrently as children of one nursery (:func:`~trio_dspy.gather`). A
  ``finish`` tool whose arguments are the signature's output fields ends the
  run with typed outputs. The adapter (``agent.react.adapter`` or the
  settings') writes the prompt and reads the tool calls, as it does for
  ``Predict``. A server that refuses tools on the first request
  (:func:`refuses_tools`) switches an ``"auto"`` agent to text mode for good.
* **text** (for servers without tool support, or ``mode="text"``): DSPy's
  loop of ``next_thought`` / ``next_tool_name`` / ``next_tool_args`` fields,
  one tool per step, then an extraction step for the typed outputs.

A tool that fails becomes an observation the model can react to; only
:class:`~trio_dspy.errors.StopAgent` (and cancellation) stops the run.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import attrs
import trio

from ..adapters.base import FINISH_TOOL
from ..concurrency import gather
from ..errors import (
    AdapterParseError,
    AgentLimitError,
    ApprovalRequired,
    GuardrailTripped,
    LMBadRequestError,
    SignatureError,
    StopAgent,
    ToolError,
    ToolsUnsupportedError,
)
from ..journal.active import ACTIVE_RUN
from ..lm.base import BaseLM
from ..messages import ToolCall
from ..primitives import Prediction, Usage
from ..settings import Settings, current, resolve_lm
from ..signature import Field, Signature, ensure_signature, signature_from_fields
from ..stream_listener import lm_status, predictor_stream, tool_status
from ..telemetry import semconv as sc
from ..telemetry.span import StatusCode, start_span
from ..usage import count_usage
from .chain_of_thought import ChainOfThought
from .module import Module
from .predict import Predict, check_inputs, resolve_adapter
from .tool import Tool, ensure_tool, format_observation
from .trajectory import Step, ToolCallRecord, Trajectory, call_arguments

__all__ = ["ReAct", "Step", "ToolCallRecord", "Trajectory", "refuses_tools"]

FINISH = FINISH_TOOL
Termination = Literal["finish", "answered", "max_iters", "parse_error"]
# The request parameters a server blames when it takes no tool definitions.
_TOOL_PARAMS = frozenset({"tools", "tool_choice"})


class ReAct(Module):
    """A tool-calling agent for ``signature``.

    Args:
        signature: what the agent takes and must produce.
        tools: :class:`Tool` objects or plain functions.
        max_iters: the most model turns before the agent must answer; reaching
            it ends with the best extraction from the trajectory and
            ``termination_reason == "max_iters"``.
        mode: ``"auto"`` (native tool calling when the model supports it, and
            text mode otherwise or after the server refuses tools), ``"native"``
            or ``"text"``.
        max_tool_concurrency: how many tool calls of one turn run at once.
        max_tool_calls: optional limit on tool calls for one run; going over
            raises :class:`~trio_dspy.errors.AgentLimitError`.
        max_tokens: optional limit on tokens for one run, likewise.

    The prediction holds the signature's outputs plus ``trajectory``
    (a :class:`~trio_dspy.Trajectory`: iterate it for the
    steps, ``to_dict()`` for DSPy's ``thought_0``, ``tool_name_0``,
    ``tool_args_0``, ``observation_0``, ... keys) and ``termination_reason``
    (``"finish"``, ``"answered"``, ``"max_iters"`` or ``"parse_error"``).

    Raises:
        SignatureError: a tool is named ``finish`` or two tools share a name,
            or the signature uses the names ``trajectory``/``termination_reason``.
    """

    def __init__(
        self,
        signature: str | type[Signature],
        tools: Sequence[Tool | Callable[..., Any]],
        max_iters: int = 10,
        *,
        mode: Literal["auto", "native", "text"] = "auto",
        max_tool_concurrency: int = 8,
        max_tool_calls: int | None = None,
        max_tokens: int | None = None,
    ) -> None:
        self.signature = ensure_signature(signature)
        clash = {"trajectory", "termination_reason"} & set(self.signature.fields)
        if clash:
            raise SignatureError(f"ReAct reserves the field name(s) {', '.join(sorted(clash))}")
        if max_iters < 1:
            raise ValueError("max_iters must be at least 1")
        if max_tool_concurrency < 1:
            raise ValueError("max_tool_concurrency must be at least 1")
        self.tools: dict[str, Tool] = {}
        for tool in map(ensure_tool, tools):
            if tool.name == FINISH or tool.name in self.tools:
                raise SignatureError(f"tool name {tool.name!r} is reserved or used twice")
            self.tools[tool.name] = tool
        self.max_iters = max_iters
        self.mode = mode
        self.max_tool_concurrency = max_tool_concurrency
        self.max_tool_calls = max_tool_calls
        self.max_tokens = max_tokens
        # Models whose server refused native tools (weakly held: they may go away).
        self._refused_tools: weakref.WeakSet[BaseLM] = weakref.WeakSet()
        self.react = Predict(self._step_signature())
        self.extract = ChainOfThought(self._extract_signature())

    if TYPE_CHECKING:  # what a call returns, for type checkers (Module.__call__ runs it)

        async def __call__(self, **inputs: Any) -> Prediction: ...

    # ------------------------------------------------------------- signatures
    def _step_signature(self) -> type[Signature]:
        sig = self.signature
        names = tuple([*self.tools, FINISH])
        inputs = ", ".join(f"`{n}`" for n in sig.input_fields)
        outputs = ", ".join(f"`{n}`" for n in sig.output_fields)
        tool_lines = [
            f"({i}) {t.name}, whose description is <desc>{t.desc}</desc>. "
            f"It takes arguments {json.dumps(t.parameters['properties'])} in JSON format."
            for i, t in enumerate(self.tools.values(), start=1)
        ]
        tool_lines.append(
            f"({len(tool_lines) + 1}) {FINISH}, whose description is <desc>Marks the task as "
            f"complete. That is, signals that all information for producing the outputs, i.e. "
            f"{outputs}, are now available to be extracted.</desc>. It takes arguments {{}}."
        )
        instructions = "\n".join(
            [
                sig.instructions,
                "",
                f"You are an Agent. In each episode, you will be given the fields {inputs} as "
                "input. And you can see your past trajectory so far.",
                "Your goal is to use one or more of the supplied tools to collect any necessary "
                f"information for producing {outputs}.",
                "",
                "To do this, you will interleave next_thought, next_tool_name, and next_tool_args "
                "in each turn, and also when finishing the task. After each tool call, you "
                "receive a resulting observation, which gets appended to your trajectory.",
                "",
                "When writing next_thought, you may reason about the current situation and plan "
                "for future steps. When selecting the next_tool_name and its next_tool_args, the "
                "tool must be one of:",
                "",
                *tool_lines,
            ]
        )
        fields = [
            *sig.input_fields.values(),
            Field("input", name="trajectory", annotation=str),
            Field("output", name="next_thought", annotation=str),
            Field("output", name="next_tool_name", annotation=Literal[names]),
            Field("output", name="next_tool_args", annotation=dict[str, Any]),
        ]
        return signature_from_fields(f"{sig.__name__}Step", fields, instructions)

    def _extract_signature(self) -> type[Signature]:
        sig = self.signature
        fields = [
            *sig.input_fields.values(),
            Field("input", name="trajectory", annotation=str),
            *sig.output_fields.values(),
        ]
        return signature_from_fields(f"{sig.__name__}Extract", fields, sig.instructions)

    # ------------------------------------------------------------------- the run
    async def forward(self, **inputs: Any) -> Prediction:
        """Run the agent loop and return outputs, trajectory and termination reason.

        Raises:
            TypeError: an input field is missing or unknown.
            ConfigurationError: no model is configured.
            AgentLimitError: ``max_tool_calls`` or ``max_tokens`` was exceeded.
            StopAgent: a tool asked to stop the agent.
            trio_dspy.errors.LMError: a model call failed.
        """
        check_inputs(self, self.signature, inputs)
        settings = current()
        lm = resolve_lm(self.react.lm, settings, pin_hint="set agent.react.lm")
        trajectory = Trajectory()
        with count_usage() as usage:
            run = _Run(self, trajectory, usage)
            if self._use_native(lm):
                outputs, reason = await self._native(lm, settings, inputs, run)
            else:
                outputs, reason = await self._text(inputs, run)
        fields = {**outputs, "trajectory": trajectory, "termination_reason": reason}
        return Prediction.from_completions(fields, usage)

    def _use_native(self, lm: BaseLM) -> bool:
        if self.mode == "text":
            return False
        if self.mode == "native":
            return True
        return lm.supports_tools and lm not in self._refused_tools

    async def _text(self, inputs: Mapping[str, Any], run: _Run) -> tuple[dict[str, Any], str]:
        reason: Termination = "max_iters"
        for index in range(self.max_iters):
            try:
                step = await self.react(**inputs, trajectory=run.trajectory.format())
            except AdapterParseError:
                reason = "parse_error"
                break
            run.check_tokens()
            if step.next_tool_name == FINISH:
                run.trajectory.steps.append(Step(step.next_thought))
                reason = "finish"
                break
            call = ToolCall(f"call_{index}", step.next_tool_name, json.dumps(step.next_tool_args))
            records = await run.call_tools([call])
            run.trajectory.steps.append(Step(step.next_thought, tuple(records)))
        return await self._extract(inputs, run.trajectory), reason

    async def _native(
        self, lm: BaseLM, settings: Settings, inputs: Mapping[str, Any], run: _Run
    ) -> tuple[dict[str, Any], str]:
        """Native tool calling, formatted and read by the adapter."""
        adapter = resolve_adapter(self.react.adapter, settings)
        request = adapter.format_request(
            self.signature,
            [],
            inputs,
            params={**settings.lm_kwargs, **self.react.lm_kwargs},
            tools=[t.spec() for t in self.tools.values()],
        )
        messages = list(request.messages)
        for _ in range(self.max_iters):
            # A streamed run reads each turn as a stream and sends the
            # ``finish`` call's fields as they are written, and the turn's text
            # as ``next_thought``, under the names of the predictors that write
            # them in text mode.
            streaming = predictor_stream(self.extract)
            thought = predictor_stream(self.react)
            reader = streaming or thought
            turn_request = attrs.evolve(request, messages=messages)
            try:
                await lm_status(lm, turn_request)
                if reader is None:
                    response = await lm.request(turn_request, trace_content=settings.trace_content)
                else:
                    response = await reader.tool_call(
                        lm,
                        turn_request,
                        FINISH,
                        trace_content=settings.trace_content,
                        thought=thought,
                    )
                await lm_status(lm, turn_request, response)
            except LMBadRequestError as exc:
                # Only a refusal of the very first request means "this server
                # takes no tools"; a 400 later in a run is an ordinary error.
                if self.mode == "auto" and not run.trajectory.steps and refuses_tools(exc):
                    self._refused_tools.add(lm)
                    return await self._text(inputs, run)
                raise
            run.check_tokens()
            turn = adapter.parse_tool_turn(response)
            if turn.answered:
                run.trajectory.steps.append(Step(turn.text))
                return await self._extract(inputs, run.trajectory), "answered"
            records = await run.call_tools(turn.calls)
            results = [(r.id, r.observation) for r in records]
            if turn.finish:
                try:
                    outputs = adapter.parse_finish(self.signature, turn.finish[0])
                except AdapterParseError as exc:
                    error = f"Error: invalid finish arguments: {exc.args[0]}"
                    results.extend((c.id, error) for c in turn.finish)
                    call = turn.finish[0]
                    failed = ToolCallRecord(
                        call.id, FINISH, call_arguments(call), error, False, 0, 0
                    )
                    run.trajectory.steps.append(Step(turn.text, (*records, failed)))
                    messages.extend(adapter.format_tool_results(turn, results))
                    continue
                run.trajectory.steps.append(Step(turn.text, tuple(records)))
                # What the stream did not show (a value that is not a JSON
                # string as written, or arguments a server sent whole).
                if streaming is not None:
                    await streaming.complete(outputs)
                return outputs, "finish"
            run.trajectory.steps.append(Step(turn.text, tuple(records)))
            messages.extend(adapter.format_tool_results(turn, results))
        return await self._extract(inputs, run.trajectory), "max_iters"

    async def _extract(self, inputs: Mapping[str, Any], trajectory: Trajectory) -> dict[str, Any]:
        pred = await self.extract(**inputs, trajectory=trajectory.format())
        return {n: pred[n] for n in self.signature.output_fields}


def refuses_tools(exc: LMBadRequestError) -> bool:
    """Whether a rejected request means the server takes no tool definitions at all.

    True for :class:`~trio_dspy.errors.ToolsUnsupportedError`, and for a bad
    request whose error body blames the ``tools`` or ``tool_choice`` parameter.
    The error's wording is never read.
    """
    return isinstance(exc, ToolsUnsupportedError) or exc.param in _TOOL_PARAMS


class _Run:
    """The mutable state of one agent run: trajectory, usage, limits, tool calls."""

    def __init__(self, agent: ReAct, trajectory: Trajectory, usage: Usage) -> None:
        self.agent = agent
        self.trajectory = trajectory
        self.usage = usage
        self.tool_calls = 0

    def check_tokens(self) -> None:
        limit = self.agent.max_tokens
        if limit is not None and self.usage.total_tokens > limit:
            raise AgentLimitError(
                f"agent used {self.usage.total_tokens} tokens, over its max_tokens={limit}",
                trajectory=self.trajectory,
            )

    async def call_tools(self, calls: Sequence[ToolCall]) -> list[ToolCallRecord]:
        """Run the calls concurrently (bounded); records come back in the order asked.

        Raises:
            AgentLimitError: the calls would go over ``max_tool_calls``.
            StopAgent: a tool asked to stop the agent (the other calls are cancelled).
        """
        limit = self.agent.max_tool_calls
        if limit is not None and self.tool_calls + len(calls) > limit:
            raise AgentLimitError(
                f"agent asked for tool call {self.tool_calls + len(calls)}, over its "
                f"max_tool_calls={limit}",
                trajectory=self.trajectory,
            )
        self.tool_calls += len(calls)
        # gather raises the first failure as itself: only StopAgent gets out of
        # _call, and it leaves the agent unwrapped.
        records = await gather(
            *(partial(self._call, call) for call in calls),
            limit=self.agent.max_tool_concurrency,
        )
        run = ACTIVE_RUN.get()
        if run is not None:  # a durable run stops here for calls that wait for approval
            await run.stop_if_waiting(records)
        return records

    async def _call(self, call: ToolCall) -> ToolCallRecord:
        with start_span(f"execute_tool {call.name}") as span:
            if span.is_recording:
                span.set_attributes(
                    {
                        sc.GEN_AI_OPERATION_NAME: sc.OPERATION_EXECUTE_TOOL,
                        sc.GEN_AI_TOOL_NAME: call.name,
                        sc.GEN_AI_TOOL_CALL_ID: call.id,
                    }
                )
            with_args = f" with {call.arguments}" if current().trace_content else ""
            tool = self.agent.tools.get(call.name)
            await tool_status(tool, _arguments(call), f"Calling tool {call.name}{with_args}")
            record = await self._run_tool(call)
            done = f"Tool {call.name} {'finished' if record.ok else 'failed'}"
            await tool_status(tool, None, done, outputs=record.observation)
            if span.is_recording and not record.ok:
                span.set_status(StatusCode.ERROR, record.observation)
                span.set_attribute(sc.ERROR_TYPE, "tool_error")
            return record

    async def _run_tool(self, call: ToolCall) -> ToolCallRecord:
        run = ACTIVE_RUN.get()
        if run is not None:  # a durable run replays, asks approval, or runs and records
            return await run.tool_step(call, self.agent.tools.get(call.name), self._run_live)
        return await self._run_live(call)

    async def _run_live(self, call: ToolCall) -> ToolCallRecord:
        start = trio.current_time()
        tool = self.agent.tools.get(call.name)
        try:
            if tool is None:
                raise ToolError(
                    f"unknown tool {call.name!r}; available: {', '.join(self.agent.tools)}",
                    tool=call.name,
                )
            observation, ok = format_observation(await tool.agent_call(call.arguments)), True
        except (StopAgent, ApprovalRequired):
            raise
        except GuardrailTripped as exc:
            if exc.halt:
                raise
            observation, ok = f"Blocked: {exc}", False
        except ToolError as exc:
            observation, ok = f"Error: {exc}", False
        except Exception as exc:
            observation, ok = f"Error: {type(exc).__name__}: {exc}", False
        duration = trio.current_time() - start
        return ToolCallRecord(
            call.id, call.name, call_arguments(call), observation, ok, start, duration
        )


def _arguments(call: ToolCall) -> dict[str, Any]:
    """A call's arguments as a dict, for a status line (``{}`` when they do not decode)."""
    value = call_arguments(call)
    return value if isinstance(value, dict) else {}
