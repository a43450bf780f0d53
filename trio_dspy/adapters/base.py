"""What an adapter does: the interface every wire format implements.

An adapter turns (signature, demos, inputs) into a request for a model and
the model's response back into typed output values. It never talks to a
model: ``Predict`` and ``ReAct`` own the call, the retries and the fallbacks.

One path serves plain calls and tool-calling ones:

* :meth:`Adapter.format_request` builds the :class:`~trio_dspy.messages.LMRequest`:
  the prompt, the ``response_format``, and with ``tools=[...]`` the tool
  definitions plus a ``finish`` tool whose arguments are the signature's outputs;
* :meth:`Adapter.parse_response` reads a plain answer into output values,
  unless :meth:`Adapter.extraction` names a second request that reads them
  (a two-step format: the answer is free text, and another model extracts
  the outputs from it; ``Predict`` sends that request);
* :meth:`Adapter.parse_tool_turn` reads a tool-calling answer (which tools,
  whether it finished), :meth:`Adapter.parse_finish` the outputs a ``finish``
  call carries, and :meth:`Adapter.format_tool_results` writes the tool
  results back into the conversation.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import AdapterParseError
from ..messages import (
    LMRequest,
    LMResponse,
    Message,
    ResponseFormat,
    ToolCall,
    ToolSpec,
    trusted_request,
)
from ..signature import Signature
from .inputs import given_fields, history_field, split_history, user_message
from .native import parse_with_reasoning, prompt_signature
from .native_tools import parse_tool_calls, tool_plan
from .outputs import parse_json_outputs
from .plan import Plan, outputs_in_text, text_inputs
from .prompt import outputs_schema, usable_demos
from .streaming import FieldParser, NullFieldParser

if TYPE_CHECKING:
    from ..lm.base import BaseLM

__all__ = [
    "FINISH_TOOL",
    "Adapter",
    "Extraction",
    "ToolTurn",
]

FINISH_TOOL = "finish"
"""The tool a tool-calling model calls, with the outputs as arguments, to answer."""


class Adapter(abc.ABC):
    """The interface of a wire format (``ChatAdapter``, ``JSONAdapter``)."""

    name: str = "adapter"
    _CACHE_SIZE = 256

    def cached_system_prompt(self, signature: type[Signature]) -> str:
        """:meth:`system_prompt`, built once per signature as it is now."""
        content = self.plan(signature).system.content
        assert isinstance(content, str)  # a system message is text
        return content

    def plan(self, signature: type[Signature]) -> Plan:
        """What every request for ``signature`` shares: its system message, its
        requirements, its traits (:class:`~trio_dspy.adapters.plan.Plan`).

        Kept for the next call with the same signature; a signature changed in
        place (``QA.instructions = ...``, a field replaced) gets a new one.
        """
        plans: dict[type[Signature], Plan] | None = self.__dict__.get("_plans")
        if plans is None:
            plans = self.__dict__["_plans"] = {}
        plan = plans.get(signature)
        if plan is None or not plan.fits(signature):
            if len(plans) >= self._CACHE_SIZE:
                plans.clear()
            plan = plans[signature] = Plan.build(
                signature,
                self.system_prompt(signature),
                self.output_requirements(signature),
                self.input_headers(signature),
            )
        return plan

    def input_headers(self, signature: type[Signature]) -> tuple[tuple[str, str], ...] | None:
        """Each input's name and the text that opens its section, when
        :meth:`format_inputs` shows every input of ``signature``, given as a
        ``str``, as that text followed by the value, the sections joined by a
        blank line (the user message is then built without it); else ``None``,
        the default."""
        return None

    @abc.abstractmethod
    def system_prompt(self, signature: type[Signature]) -> str:
        """The system message: field list, structure and instructions."""

    def format_request(
        self,
        signature: type[Signature],
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
        *,
        params: Mapping[str, Any] | None = None,
        tools: Sequence[ToolSpec] | None = None,
    ) -> LMRequest:
        """The request that asks a model for ``signature``'s outputs given ``inputs``.

        Without ``tools``: the messages of :meth:`format` and this format's
        :meth:`response_format`. With ``tools`` (a list, possibly empty): the
        model is told it is an agent, and is offered the tools plus the
        ``finish`` tool (:meth:`finish_spec`), whose arguments are the outputs;
        read its answers with :meth:`parse_tool_turn`. ``params`` are the
        sampling parameters.

        Raises:
            ValueError: ``tools`` come with demos (a tool-calling prompt shows
                none), or a tool is named ``finish``.
            TypeError: an image or history input is not a ``td.Image`` /
                ``td.History`` (:meth:`format`).
            SignatureError: a field not typed ``td.Image`` holds an image (:meth:`format`).
        """
        params = dict(params or {})
        if tools is None:
            native: tuple[ToolSpec, ...] = ()
            if not outputs_in_text(signature):
                signature = prompt_signature(signature, params)  # native td.Reasoning outputs
                signature, inputs, native = tool_plan(self, signature, inputs)  # and td.ToolCalls
            return trusted_request(
                tuple(self.format(signature, demos, inputs)),
                native,
                self.response_format(signature),
                params,
            )
        if demos:
            raise ValueError("a tool-calling request shows no demos: pass demos=[] with tools")
        if any(t.name == FINISH_TOOL for t in tools):
            raise ValueError(f"the tool name {FINISH_TOOL!r} is reserved for the answer")
        signature, inputs, turns = split_history(signature, inputs)
        messages = [
            Message("system", self.tool_system_prompt(signature)),
            *self.format_history(signature, turns),
            user_message(self.format_inputs(signature, inputs)),
        ]
        return LMRequest(messages, tools=(*tools, self.finish_spec(signature)), params=params)

    def format(
        self,
        signature: type[Signature],
        demos: Sequence[Mapping[str, Any]],
        inputs: Mapping[str, Any],
    ) -> list[Message]:
        """The messages that ask the model for ``signature``'s outputs given ``inputs``.

        The system prompt, then each demo as a user turn (its inputs) and an
        assistant turn (its outputs), then the messages of a ``td.History``
        input the same way, then the inputs and what to answer. As in DSPy,
        the system prompt lists the History input among the inputs and a demo
        that holds a History shows it as JSON; image inputs become image parts
        of the user messages, where their sections are.

        Raises:
            TypeError: an image or history input is not a ``td.Image`` /
                ``td.History``, or a history message has no field of ``signature``.
            SignatureError: a field not typed ``td.Image`` (an input, or a
                demo's or history turn's output) holds an image, anywhere inside
                its value: it would be sent as text.
        """
        plan = self.plan(signature)
        if not demos and (text := text_inputs(plan, inputs)) is not None:
            return [plan.system, user_message(text)]  # text inputs alone
        messages = [plan.system]
        requirements = plan.requirements
        history = history_field(signature)
        if history is None:
            if demos:
                for demo in usable_demos(signature, demos):
                    messages.extend(self._turn(signature, demo))
        else:
            # As DSPy: the system prompt lists a History input with the others,
            # and a demo that holds one shows it (as JSON) where its section goes.
            full = signature
            signature, inputs, turns = split_history(signature, inputs)
            requirements = self.plan(signature).requirements  # the history input left out
            for demo in usable_demos(signature, demos):
                shown = full if demo.get(history) is not None else signature
                messages.extend(self._turn(shown, demo))
            messages.extend(self.format_history(signature, turns))
        body = self.format_inputs(signature, inputs)
        text = f"{body}\n\n{requirements}" if requirements else body
        messages.append(user_message(text))
        return messages

    def format_history(
        self, signature: type[Signature], turns: Sequence[Mapping[str, Any]]
    ) -> list[Message]:
        """Earlier turns of a conversation (the messages of a ``td.History``) as
        a user message of each turn's inputs and an assistant message of its
        outputs, each showing only the fields the turn has."""
        return [m for turn in turns for m in self._turn(given_fields(signature, turn), turn)]

    def _turn(self, signature: type[Signature], values: Mapping[str, Any]) -> list[Message]:
        out = []
        if any(n in values for n in signature.input_fields):
            out.append(user_message(self.format_inputs(signature, values)))
        if any(n in values for n in signature.output_fields):
            out.append(Message("assistant", self.format_outputs(signature, values)))
        return out

    @abc.abstractmethod
    def format_inputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        """Input values as a user message shows them."""

    @abc.abstractmethod
    def format_outputs(self, signature: type[Signature], values: Mapping[str, Any]) -> str:
        """Output values as the model should write them (demos show this)."""

    @abc.abstractmethod
    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        """The typed output values in ``completion``.

        Raises:
            AdapterParseError: a field is missing or has a value of the wrong type.
        """

    def parse_response(self, signature: type[Signature], response: LMResponse) -> dict[str, Any]:
        """The typed output values of a plain (not tool-calling) response.

        Raises:
            AdapterParseError: the answer was cut off at the token limit, or
                :meth:`parse` failed on its text.
        """
        if response.finish_reason == "length":
            # Whatever parses from a cut-off answer is missing its end.
            raise AdapterParseError(
                "the completion was cut off at the token limit (raise max_tokens?)",
                completion=response.text,
                adapter=self.name,
                signature=signature.__name__,
            )
        if outputs_in_text(signature):
            return self.parse(signature, response.text)
        return parse_tool_calls(
            self, partial(parse_with_reasoning, self.parse), signature, response
        )

    def extraction(self, signature: type[Signature]) -> Extraction | None:
        """The second request that reads ``signature``'s outputs out of an answer, if any.

        ``None`` (every one-step format): :meth:`parse_response` reads the
        answer. A two-step format (:class:`~trio_dspy.TwoStepAdapter`) answers
        with an :class:`Extraction`: ``Predict`` then asks its model, with its
        adapter, for its signature's outputs given the answer's text.
        """
        return None

    def stream_parser(self, signature: type[Signature], fields: Sequence[str]) -> FieldParser:
        """A fresh incremental parser of one completion's ``fields`` (``str`` outputs).

        Fed the completion's text deltas, it reports ``(field, chunk)`` pieces
        whose concatenation per field is the value :meth:`parse` gives. This
        default reports nothing; the wire formats override it.
        """
        return NullFieldParser()

    @abc.abstractmethod
    def output_requirements(self, signature: type[Signature]) -> str:
        """The sentence that tells the model how to lay out its answer."""

    def response_format(self, signature: type[Signature]) -> ResponseFormat | None:
        """The structured-output request to send with the prompt, if any."""
        return None

    def structured_fallback(self) -> Adapter | None:
        """The adapter that re-asks, in structured-output mode, after an answer did not parse.

        ``None`` (the default) re-asks in this adapter's own format, showing
        the model its error (:meth:`format_retry`).
        """
        return None

    def format_retry(
        self, completion: str, error: AdapterParseError, signature: type[Signature]
    ) -> list[Message]:
        """Messages appended to the conversation to re-ask after a parse failure."""
        return [
            Message("assistant", completion),
            Message(
                "user",
                f"Your previous response could not be used: {error.args[0]}\n\n"
                + self.output_requirements(signature),
            ),
        ]

    # ------------------------------------------------------------ tool calling
    def tool_system_prompt(self, signature: type[Signature]) -> str:
        """The system message of a tool-calling request: instructions, inputs, ``finish``."""
        inputs = ", ".join(f"`{n}`" for n in signature.input_fields)
        outputs = ", ".join(f"`{n}`" for n in signature.output_fields)
        return (
            f"{signature.instructions}\n\nYou are an agent. You are given the input fields "
            f"{inputs}. Use the tools to gather information and to act; call several tools "
            "at once when they are independent. When you have everything needed to produce "
            f"{outputs}, call the `{FINISH_TOOL}` tool with those fields as its arguments."
        )

    def finish_spec(self, signature: type[Signature]) -> ToolSpec:
        """The ``finish`` tool: its arguments are ``signature``'s outputs."""
        return ToolSpec(
            FINISH_TOOL,
            "Finish the task: give the final output fields as arguments.",
            outputs_schema(signature, strict=False),
        )

    def parse_tool_turn(self, response: LMResponse) -> ToolTurn:
        """What a response to a tool-calling request asks for."""
        return ToolTurn(response.text, response.tool_calls)

    def parse_finish(self, signature: type[Signature], call: ToolCall) -> dict[str, Any]:
        """The typed outputs a ``finish`` call carries (a JSON object of the outputs).

        Raises:
            AdapterParseError: an output is missing or does not fit its type.
        """
        return parse_json_outputs(signature, call.arguments, adapter=self.name)

    def format_tool_results(
        self, turn: ToolTurn, results: Sequence[tuple[str, str]]
    ) -> list[Message]:
        """The messages that continue the conversation after ``turn``'s tools ran.

        ``results`` are ``(tool_call_id, observation)`` pairs, one per call
        answered, in the order to show them.
        """
        return [
            Message("assistant", turn.text, tool_calls=turn.tool_calls),
            *(Message("tool", observation, tool_call_id=id_) for id_, observation in results),
        ]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@attrs.frozen
class Extraction:
    """A request to send after the answer: read the outputs out of its text.

    Attributes:
        lm: the model that reads them.
        adapter: the wire format of that request (it never is a two-step one).
        signature: the outputs, with ``field`` as the one input.
        field: the input that holds the first answer's text.
    """

    lm: BaseLM
    adapter: Adapter
    signature: type[Signature]
    field: str = "text"


@attrs.frozen
class ToolTurn:
    """A model's answer to a tool-calling request: its text and the tools it called.

    Attributes:
        text: what the model wrote (its thought, or its answer in prose).
        tool_calls: every call, in the order the model asked for them.
    """

    text: str
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def answered(self) -> bool:
        """The model called nothing: it answered in text."""
        return not self.tool_calls

    @property
    def calls(self) -> tuple[ToolCall, ...]:
        """The calls of tools to run (every call but ``finish``), in order."""
        return tuple(c for c in self.tool_calls if c.name != FINISH_TOOL)

    @property
    def finish(self) -> tuple[ToolCall, ...]:
        """The ``finish`` calls (the first one carries the outputs)."""
        return tuple(c for c in self.tool_calls if c.name == FINISH_TOOL)
