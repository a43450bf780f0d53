"""What an agent did: the :class:`Trajectory` of a :class:`~trio_dspy.ReAct` run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import attrs

from ..adapters.base import FINISH_TOOL
from ..types.text import loads_json

if TYPE_CHECKING:
    from ..messages import ToolCall

__all__ = ["Step", "ToolCallRecord", "Trajectory", "call_arguments"]


def call_arguments(call: ToolCall) -> Any:
    """A tool call's arguments decoded from JSON, or the text as the model sent
    it when it is not JSON (what a :class:`ToolCallRecord` keeps). Raises nothing."""
    try:
        return loads_json(call.arguments)
    except ValueError:
        return call.arguments


FINISH = FINISH_TOOL
COMPLETED = "Completed."


@attrs.frozen
class ToolCallRecord:
    """One tool call of a step: what was asked, what came back, when, how long.

    Attributes:
        id: the call's id (the model's, or ``call_<i>`` in text mode).
        name: the tool's name.
        arguments: the arguments as the model sent them (decoded JSON, or the
            raw text when it was not JSON).
        observation: what the model was shown: the result as text, or
            ``"Error: ..."``.
        ok: whether the tool ran and returned.
        started: trio clock time the call started, in seconds.
        duration: seconds it took.
    """

    id: str
    name: str
    arguments: Any
    observation: str
    ok: bool
    started: float
    duration: float


@attrs.frozen
class Step:
    """One turn of the agent: its thought and the tool calls it made (run concurrently)."""

    thought: str
    calls: tuple[ToolCallRecord, ...] = ()


@attrs.define
class Trajectory:
    """The steps of an agent run, in order: ``pred.trajectory``.

    ::

        for step in pred.trajectory:  # Step(thought, calls)
            for call in step.calls:  # ToolCallRecord
                print(call.name, call.arguments, call.observation, call.ok)
        pred.trajectory[0].thought
        len(pred.trajectory)  # number of steps
        pred.trajectory.tool_calls  # every call of every step

    A step is one model turn: its ``thought`` (the text the model wrote with
    its tool calls; ``next_thought`` in text mode) and the ``calls`` it made,
    which ran concurrently. A step without calls is the one that ended the
    run (the model called ``finish`` or answered in plain text).

    :meth:`to_dict` gives DSPy's flat form, ``{"thought_0": ...,
    "tool_name_0": ..., "tool_args_0": {...}, "observation_0": ..., ...}``
    (see there for how a step with several calls is flattened).
    """

    steps: list[Step] = attrs.field(factory=list)

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __getitem__(self, index: int) -> Step:
        return self.steps[index]

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        """Every tool call of every step."""
        return [c for s in self.steps for c in s.calls]

    def format(self) -> str:
        """The trajectory as text for prompts."""
        if not self.steps:
            return "(no steps yet)"
        lines = []
        for i, step in enumerate(self.steps, start=1):
            lines.append(f"Step {i}\nThought: {step.thought}")
            for call in step.calls:
                args = json.dumps(call.arguments, ensure_ascii=False, default=str)
                lines.append(
                    f"Tool: {call.name}\nArguments: {args}\nObservation: {call.observation}"
                )
        return "\n\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """DSPy's flat form: ``thought_i``, ``tool_name_i``, ``tool_args_i``, ``observation_i``.

        Each tool call gets its own index ``i``, in the order the calls were
        asked for, so every value has DSPy's type (a name, an argument dict, an
        observation string). A step with several concurrent calls takes
        several consecutive indices: the step's thought goes with its first
        call and the others have an empty ``thought_i``. A step without calls
        (the end of the run) becomes ``tool_name_i == "finish"`` with empty
        arguments and the observation ``"Completed."``, as in DSPy.
        """
        out: dict[str, Any] = {}
        i = 0
        for step in self.steps:
            entries = [(c.name, c.arguments, c.observation) for c in step.calls] or [
                (FINISH, {}, COMPLETED)
            ]
            for j, (name, arguments, observation) in enumerate(entries):
                out[f"thought_{i}"] = step.thought if j == 0 else ""
                out[f"tool_name_{i}"] = name
                out[f"tool_args_{i}"] = arguments
                out[f"observation_{i}"] = observation
                i += 1
        return out
