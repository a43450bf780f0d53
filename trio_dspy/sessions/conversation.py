"""``td.chat``: a program that carries a conversation, its ``td.History`` input
filled from a session and each turn stored back."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from ..errors import SessionError, SignatureError
from ..logs import get_logger
from ..modules import Module
from ..signature import Signature
from ..types import History, unstructure
from .base import Session, encode_turn, turn_lock

__all__ = ["Chat", "chat"]

log = get_logger(__name__)


def chat(program: Module, session: Session) -> Chat:
    """``program`` as a conversation kept in ``session``: each call is one turn.

    ::

        bot = td.chat(td.Predict("question, history: History -> answer"), session)
        await bot(question="Do you have oat milk?")
        await bot(question="How much is it?")  # sees the first question and its answer

    The program must take exactly one ``td.History`` input (found from its
    ``forward`` parameters, else from its predictors' signatures). See
    :class:`Chat` for what a turn does.

    Raises:
        SignatureError: the program has no ``td.History`` input, or several.
        TypeError: ``program`` is not a ``td.Module`` or ``session`` has no
            ``history``/``append``/``clear`` methods.
    """
    return Chat(program, session)


class Chat(Module):
    """A program and the session of its conversation (made by :func:`chat`).

    A call is one turn: it reads the session's history, calls the program
    with it as the ``td.History`` input, stores the turn (the call's inputs
    without the history, and the prediction's output fields) and returns
    the prediction. Turns of one session run one after another (the
    session's ``turn()`` lock; across processes for ``RedisSession``), so each
    sees the turns before it; turns of different sessions run at once.

    A stored turn with none of the fields of the signature that takes the
    history (one stored by an earlier version of the program, whose fields
    had other names) is left out of the history sent, with a warning
    (``sessions.turn_skipped``), rather than failing every later turn.

    The stored outputs are the prediction's fields that the program's
    signatures declare as outputs (``reasoning`` too, for ``ChainOfThought``,
    as DSPy's own examples keep it), else all of its fields. Values are
    stored as JSON (records and pydantic models as their objects, as the
    model sees them).

    ``program`` is a sub-module, so ``named_predictors()``, ``save`` and
    ``load`` reach its predictors as ``program.<name>``.
    """

    def __init__(self, program: Module, session: Session) -> None:
        if not isinstance(program, Module):
            raise TypeError(f"td.chat takes a td.Module, got {type(program).__name__}")
        if not isinstance(session, Session):
            raise TypeError(
                "td.chat takes a session (history(), append(inputs, outputs), clear()), "
                f"got {type(session).__name__}"
            )
        self.program = program
        self.session = session
        signatures = _signatures(program)
        #: The name of the program's ``td.History`` input, which the session fills.
        self.history_input = _history_input(program, signatures)
        self._inputs = _annotations(signatures, inputs=True)
        self._outputs = _annotations(signatures, inputs=False)
        # The fields a history message may show: those of the signatures that take it.
        self._shown = frozenset(
            name
            for sig in signatures
            if self.history_input in sig.input_fields
            for name in sig.fields
            if name != self.history_input
        )

    async def forward(self, **inputs: Any) -> Any:
        """Run one turn: the history in, the program called, the turn stored.

        Raises:
            TypeError: the history input is given (the session fills it), or
                an input is not JSON-like (nothing was called or stored), or
                the program returned no prediction.
            SessionError: the session could not be read (nothing was called),
                or the turn could not be stored (``.prediction`` holds the answer).
            Exception: whatever the program raises (nothing is stored).
        """
        if self.history_input in inputs:
            raise TypeError(
                f"td.chat fills {self.history_input!r} from the session: leave it out of the call"
            )
        said = {k: _plain(v, self._inputs.get(k, Any)) for k, v in inputs.items()}
        encode_turn(said, {})  # a value no session can store fails before anything is spent
        async with self._turn():
            history = self._usable(await self.session.history())
            prediction = await self.program(**inputs, **{self.history_input: history})
            answered = self._answered(prediction)
            try:
                await self.session.append(said, answered)
            except SessionError as exc:
                exc.prediction = prediction
                raise
        return prediction

    def _turn(self) -> AbstractAsyncContextManager[None]:
        turn = getattr(self.session, "turn", None)
        if callable(turn):
            lock: AbstractAsyncContextManager[None] = turn()
            return lock
        return turn_lock(("session", id(self.session)))

    def _usable(self, history: History) -> History:
        if not self._shown:
            return history
        kept = [m for m in history.messages if not self._shown.isdisjoint(m)]
        if len(kept) < len(history.messages):
            log.warning(
                "sessions.turn_skipped",
                session=repr(self.session),
                turns=len(history.messages) - len(kept),
                reason=f"none of the fields of the signature that takes {self.history_input!r}",
            )
            return History(kept)
        return history

    def _answered(self, prediction: object) -> dict[str, Any]:
        if not isinstance(prediction, Mapping):
            raise TypeError(
                f"td.chat stores the program's outputs: {type(self.program).__name__} "
                f"returned {type(prediction).__name__}, not a td.Prediction"
            )
        declared = {k: v for k, v in prediction.items() if k in self._outputs}
        fields = declared or dict(prediction)
        return {k: _plain(v, self._outputs.get(k, Any)) for k, v in fields.items()}

    def __repr__(self) -> str:
        return f"Chat({type(self.program).__name__}, {self.session!r})"


def _plain(value: Any, annotation: Any) -> Any:
    """``value`` as JSON-like data, as the field's declared type writes it."""
    try:
        return unstructure(value, annotation)
    except (TypeError, ValueError, RecursionError):
        return value  # encode_turn refuses it, naming the field


def _signatures(program: Module) -> list[type[Signature]]:
    """The program's own signature (an agent's), then its predictors'."""
    found = []
    own = getattr(program, "signature", None)
    if isinstance(own, type) and issubclass(own, Signature):
        found.append(own)
    found.extend(p.signature for _, p in program.named_predictors())
    return found


def _annotations(signatures: list[type[Signature]], *, inputs: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sig in signatures:
        fields = sig.input_fields if inputs else sig.output_fields
        for name, field in fields.items():
            out.setdefault(name, field.annotation)
    return out


def _history_input(program: Module, signatures: list[type[Signature]]) -> str:
    """The name of the program's one ``td.History`` input.

    Raises:
        SignatureError: there is none, or there are several.
    """
    kind = type(program).__name__
    params = inspect.signature(program.forward).parameters
    try:
        hints = typing.get_type_hints(program.forward)
    except Exception:  # an annotation that does not resolve: read the signatures instead
        hints = {}
    in_forward = [n for n in params if hints.get(n) is History]
    if len(in_forward) > 1:
        raise SignatureError(
            f"td.chat needs exactly one td.History input; {kind}.forward takes "
            f"{len(in_forward)}: {', '.join(in_forward)}"
        )
    if in_forward:
        return in_forward[0]
    names = sorted(
        {n for sig in signatures for n, f in sig.input_fields.items() if f.annotation is History}
    )
    if len(names) != 1:
        found = f"it has {len(names)}: {', '.join(names)}" if names else "it has none"
        raise SignatureError(
            f"td.chat needs a program with exactly one td.History input, which the session "
            f"fills; {kind} {found}. Add `history: td.History = td.InputField()` to the "
            "signature (or `history: History` to a string signature)"
        )
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not takes_any and names[0] not in params:
        raise SignatureError(
            f"td.chat fills {names[0]!r} from the session, but {kind}.forward does not take "
            f"it: add a `{names[0]}: td.History` parameter and pass it to the predictor"
        )
    return names[0]
