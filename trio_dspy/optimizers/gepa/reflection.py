"""GEPA's reflection: show a model how one predictor did, and read back new instructions.

The prompt is the gepa engine's (0.1.x) reflection template, word for word:
the current instructions between triple backticks, then one record per
minibatch example (the predictor's inputs, what it generated, and the
metric's feedback), then the request to write better instructions inside
triple backticks. The answer is read as the gepa engine reads it: the text
between the first and the last fence, without a language tag.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["REFLECTION_TEMPLATE", "ReflectionRecord", "extract_instruction", "reflection_prompt"]

REFLECTION_TEMPLATE = """I provided an assistant with the following instructions to perform a task for me:
```
<curr_instructions>
```

The following are examples of different task inputs provided to the assistant along with the assistant's response for each of them, and some feedback on how the assistant's response could be better:
```
<inputs_outputs_feedback>
```

Your task is to write a new instruction for the assistant.

Read the inputs carefully and identify the input format and infer detailed task description about the task I wish to solve with the assistant.

Read all the assistant responses and the corresponding feedback. Identify all niche and domain specific factual information about the task and include it in the instruction, as a lot of it may not be available to the assistant in the future. The assistant may have utilized a generalizable strategy to solve the task, if so, include that in the instruction as well.

Provide the new instructions within ``` blocks."""  # noqa: E501  (the engine's text, kept whole)

ReflectionRecord = Mapping[str, Any]
"""``{"Inputs": {...}, "Generated Outputs": {...} or text, "Feedback": text}``."""

_LANGUAGE_TAG = re.compile(r"^\S*\n")
_LEADING_FENCE = re.compile(r"^```\S*\n?")


def _render(value: Any, level: int) -> str:
    """A value as nested Markdown headings, as the engine renders its records."""
    if isinstance(value, Mapping):
        if not value:
            return "\n"
        return "".join(
            f"{'#' * level} {key}\n" + _render(item, min(level + 1, 6))
            for key, item in value.items()
        )
    if isinstance(value, list | tuple):
        if not value:
            return "\n"
        return "".join(
            f"{'#' * level} Item {i + 1}\n" + _render(item, min(level + 1, 6))
            for i, item in enumerate(value)
        )
    return f"{str(value).strip()}\n\n"


def render_records(records: Sequence[ReflectionRecord]) -> str:
    """The records as the template's ``<inputs_outputs_feedback>``."""
    blocks = []
    for i, record in enumerate(records, start=1):
        text = f"# Example {i}\n"
        for key, value in record.items():
            text += f"## {key}\n" + _render(value, 3)
        blocks.append(text)
    return "\n\n".join(blocks)


def reflection_prompt(instructions: str, records: Sequence[ReflectionRecord]) -> str:
    """The whole reflection prompt for one predictor."""
    return REFLECTION_TEMPLATE.replace("<curr_instructions>", instructions).replace(
        "<inputs_outputs_feedback>", render_records(records)
    )


def extract_instruction(answer: str) -> str:
    """The new instructions in a reflection answer: the text between the first and the
    last triple-backtick fence (a language tag dropped); with one fence, the text on
    its other side; with none, the whole answer. Stripped; may be empty."""
    text = answer.strip()
    start = text.find("```") + 3
    end = text.rfind("```")
    if start >= end:  # no fence, or a single one
        if text.startswith("```"):
            match = _LEADING_FENCE.match(text)
            return text[match.end() if match else 3 :].strip()
        if text.endswith("```"):
            return text[:-3].strip()
        return text
    return _LANGUAGE_TAG.sub("", text[start:end], count=1).strip()
