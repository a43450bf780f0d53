"""DSPy's streaming objects: ``StreamListener`` and ``StatusMessageProvider``.

``td.streamify(program, stream_listeners=[td.StreamListener("answer")],
status_message_provider=MyProvider())`` reads as DSPy's call: a listener
names a field (and, optionally, the predictor) to stream, the provider
writes the status lines. Both are turned into what
:func:`~trio_dspy.streamify` does natively (``listen=`` and
:class:`~trio_dspy.StatusMessage` items).
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["StatusMessageProvider", "StreamListener"]


@attrs.frozen
class StreamListener:
    """Stream one output field: DSPy's ``StreamListener``.

    Attributes:
        signature_field_name: the ``str`` output field to stream.
        predict: the predictor whose field it is (``None``: every predictor
            with that field).
        predict_name: the predictor by its name in ``named_predictors()``
            (``"agent.extract.predict"``), instead of ``predict``.
        allow_reuse: as in DSPy: ``False`` streams the field from the first
            call that has it and no other (the first of an agent's steps);
            ``True`` streams it from every call (each step in turn).
    """

    signature_field_name: str
    predict: Any = attrs.field(default=None, eq=False)
    predict_name: str | None = None
    allow_reuse: bool = False


class StatusMessageProvider:
    """The status lines of a streamed run: DSPy's ``StatusMessageProvider``.

    Subclass it and override the methods whose lines you want; each returns
    the text of a :class:`~trio_dspy.StatusMessage`, or ``None`` for no line.
    Tool lines default to trio_dspy's own (``"Calling tool check_menu"``);
    module and LM lines default to none.
    """

    def tool_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        """The line before a tool runs (``instance`` is the :class:`~trio_dspy.Tool`)."""
        return f"Calling tool {instance.name}"

    def tool_end_status_message(self, outputs: Any) -> str | None:
        """The line after a tool has run (``outputs`` is its result)."""
        return "Tool finished"

    def module_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        """The line before a module (or predictor) runs."""
        return None

    def module_end_status_message(self, outputs: Any) -> str | None:
        """The line after a module (or predictor) has run."""
        return None

    def lm_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        """The line before a predictor or agent calls its model (``instance`` is
        the LM; ``inputs`` its ``messages`` and sampling parameters, as in DSPy)."""
        return None

    def lm_end_status_message(self, outputs: Any) -> str | None:
        """The line after the model answered (``outputs``: the list of its texts)."""
        return None
