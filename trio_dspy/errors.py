"""The exceptions trio_dspy raises.

Every error the library raises on purpose derives from :class:`TrioDSPyError`,
so ``except td.errors.TrioDSPyError`` catches them all. Each message says what
went wrong and, where there is one, what to do about it.
"""

from __future__ import annotations

__all__ = [
    "AdapterParseError",
    "AgentLimitError",
    "ApprovalRequired",
    "ConfigurationError",
    "ContextWindowExceededError",
    "GuardrailError",
    "GuardrailTripped",
    "ImageTooLargeError",
    "JournalBusy",
    "JournalCorrupt",
    "JournalError",
    "JournalMismatch",
    "JournalUnavailable",
    "LMAuthError",
    "LMBadRequestError",
    "LMError",
    "LMRateLimitError",
    "LMResponseTooLargeError",
    "LMServerError",
    "LMTimeoutError",
    "LimitsUnavailableError",
    "MediaTooLargeError",
    "ParallelError",
    "PartUnsupportedError",
    "RequestTimeoutError",
    "SessionCorruptError",
    "SessionError",
    "SessionUnavailableError",
    "SignatureError",
    "StopAgent",
    "StructuringError",
    "ToolArgumentError",
    "ToolDenied",
    "ToolError",
    "ToolTimeoutError",
    "ToolsUnsupportedError",
    "TrioDSPyError",
    "UsageLimitExceeded",
]


class TrioDSPyError(Exception):
    """Base class of every error trio_dspy raises on purpose."""


class ConfigurationError(TrioDSPyError):
    """Something needed for a call is not configured (for example, no LM)."""


class SignatureError(TrioDSPyError, TypeError):
    """A signature is malformed: raised when the class (or string) is defined.

    Also raised when a call is made, before anything is sent, for a value
    only a differently declared field can carry: a ``td.Image`` in a field
    not typed ``td.Image``. The fix is then in the signature too.
    """


class ImageTooLargeError(TrioDSPyError, ValueError):
    """An image is larger than the limit of ``td.Image.from_file`` / ``from_bytes``.

    ``path`` names the file (``None`` for bytes), ``size`` is its size in
    bytes (``None`` when unknown: a pipe, a device or a file that grew while
    read, of which ``limit + 1`` bytes were read), ``limit`` the
    ``max_bytes`` in force. Pass a larger ``max_bytes=`` to accept it.
    """

    def __init__(self, message: str, *, path: str | None, size: int | None, limit: int) -> None:
        self.path = path
        self.size = size
        self.limit = limit
        super().__init__(message)


class MediaTooLargeError(TrioDSPyError, ValueError):
    """Audio or a file is larger than the limit of ``td.Audio`` / ``td.File``'s readers.

    ``path`` is the file (``None`` for bytes in memory), ``size`` its size in
    bytes when known, ``limit`` the bound; the message says how to raise it.
    """

    def __init__(self, message: str, *, path: str | None, size: int | None, limit: int) -> None:
        self.path = path
        self.size = size
        self.limit = limit
        super().__init__(message)


class StructuringError(TrioDSPyError, ValueError):
    """A value could not be turned into the type a field declares.

    ``path`` is the dotted path to the offending value (``action.size``),
    ``value`` the value itself, ``reason`` the explanation without the path.
    """

    def __init__(self, path: str, value: object, reason: str) -> None:
        self.path = path
        self.value = value
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)


class AdapterParseError(TrioDSPyError, ValueError):
    """A completion could not be parsed into the signature's output fields.

    ``completion`` holds the raw text the model produced, so nothing is lost;
    ``adapter`` names the adapter that failed and ``signature`` the signature.
    """

    def __init__(
        self,
        message: str,
        *,
        completion: str,
        adapter: str = "",
        signature: str = "",
        attempts: int = 1,
    ) -> None:
        self.completion = completion
        self.adapter = adapter
        self.signature = signature
        self.attempts = attempts
        super().__init__(message)

    def __str__(self) -> str:
        head = super().__str__()
        where = f"{self.adapter} on {self.signature}" if self.signature else self.adapter
        raw = self.completion if len(self.completion) <= 500 else self.completion[:500] + "…"
        return f"{head} ({where}, {self.attempts} attempt(s)); raw completion: {raw!r}"


class LMError(TrioDSPyError):
    """A language-model call failed.

    ``status_code`` is the HTTP status when there was one, ``provider`` and
    ``model`` say which call failed, ``message`` is the provider's own text.
    ``code`` and ``param`` are the provider's error code (OpenAI's
    ``error.code``, else the error ``type``, which is all Anthropic sends)
    and the request parameter it blames (``error.param``); ``None`` when
    the error body does not name them.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        provider: str = "",
        model: str = "",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.provider = provider
        self.model = model
        self.code = code
        self.param = param
        super().__init__(message)

    def __str__(self) -> str:
        parts = [p for p in (self.provider, self.model) if p]
        where = "/".join(parts)
        status = f"HTTP {self.status_code}" if self.status_code is not None else ""
        prefix = ", ".join(p for p in (where, status) if p)
        return f"{prefix}: {self.message}" if prefix else self.message


class LMAuthError(LMError):
    """The provider refused the credentials (401/403): check the API key."""


class LMRateLimitError(LMError):
    """The provider kept answering 429 after every retry.

    ``retry_after`` is the delay in seconds the provider last asked for, if any.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class LMTimeoutError(LMError):
    """The call did not finish within its ``timeout`` (retries included)."""


class LMServerError(LMError):
    """The provider failed (5xx, dropped connection) after every retry."""


class LMResponseTooLargeError(LMServerError):
    """The response was larger than the LM's ``max_response_bytes``: not retried.

    ``limit`` is that bound in bytes. The body was neither read nor
    decompressed past it.
    """

    def __init__(self, message: str, *, limit: int, **kw: object) -> None:
        self.limit = limit
        super().__init__(message, **kw)  # type: ignore[arg-type]


class LimitsUnavailableError(LMError):
    """The shared limits (``LM(limits=td.RedisLimits(...))``) could not be reached.

    Raised before the request is sent: nothing was spent. Not retried by the
    LM, since every process would then run unlimited or pile up retries;
    check that Redis is up and its URL is right.
    """


class LMBadRequestError(LMError):
    """The provider rejected the request as malformed (400/404/422): not retried."""


class PartUnsupportedError(LMBadRequestError):
    """The provider cannot take a part of the prompt (audio for Anthropic, a
    file type it does not read): raised before anything is sent, naming the
    part and what to send instead."""


class ToolsUnsupportedError(LMBadRequestError):
    """The server refused native tool definitions (it takes no ``tools``).

    Raised for a 400/422 answer to a request that carried tools when the
    error's ``param`` or ``code`` is ``tools`` or ``tool_choice``. Agents in
    ``mode="auto"`` switch to text-mode tool calling on this error.
    """


class ContextWindowExceededError(LMBadRequestError):
    """The prompt (plus requested completion) does not fit the model's context."""


class ToolError(TrioDSPyError):
    """A tool could not be called or failed. ``tool`` names it.

    Inside an agent these become observations the model can react to.
    """

    def __init__(self, message: str, *, tool: str) -> None:
        self.tool = tool
        super().__init__(message)


class ToolArgumentError(ToolError):
    """The arguments given to a tool do not fit its signature; it was not called."""


class ToolTimeoutError(ToolError):
    """A tool did not finish within its ``timeout``; only that tool was cancelled."""


class StopAgent(TrioDSPyError):
    """Raise from a tool to stop the agent: it propagates out of the agent call.

    Every other exception a tool raises becomes an observation instead.
    """


class AgentLimitError(TrioDSPyError):
    """An agent run went over one of its limits (tool calls, tokens).

    ``trajectory`` holds the steps taken so far, so nothing is lost.
    """

    def __init__(self, message: str, *, trajectory: object = None) -> None:
        self.trajectory = trajectory
        super().__init__(message)


class RequestTimeoutError(TrioDSPyError):
    """A request did not finish within its ``request_scope`` timeout; its work was cancelled."""

    def __init__(self, message: str, *, request_id: str) -> None:
        self.request_id = request_id
        super().__init__(message)


class ParallelError(TrioDSPyError):
    """A :class:`~trio_dspy.Parallel` run stopped because more than ``max_errors`` calls failed.

    ``results`` holds every slot as far as it got (``None`` for a call that
    failed or did not finish), ``errors`` the exceptions by slot index.
    """

    def __init__(
        self, message: str, *, results: list[object], errors: dict[int, BaseException]
    ) -> None:
        self.results = results
        self.errors = errors
        super().__init__(message)


class SessionError(TrioDSPyError):
    """A conversation session (``td.sessions``) could not be read or written.

    ``store`` names where the session lives (a file path, or a Redis URL
    without its password), ``session_id`` which conversation. When the
    failure came after a ``td.chat`` turn was answered, ``prediction`` holds
    that answer (it was not stored), so nothing is lost; else it is ``None``.
    """

    def __init__(
        self, message: str, *, store: str, session_id: str | None = None, prediction: object = None
    ) -> None:
        self.store = store
        self.session_id = session_id
        self.prediction = prediction
        super().__init__(message)


class SessionUnavailableError(SessionError):
    """The session store could not be reached or used: Redis is down or its URL
    is wrong, or the SQLite file cannot be opened or stayed locked. Nothing was
    read or written; try again once the store is back."""


class SessionCorruptError(SessionError):
    """The session store holds something that is not a session: a file that is
    not a SQLite database (or is damaged), or a stored turn that is not the
    JSON a session writes. The store is left as it was; restore it from a
    backup, point the session elsewhere, or ``clear()`` a session whose turn is bad."""


class GuardrailTripped(TrioDSPyError):
    """A guardrail of a :func:`~trio_dspy.guarded` module or a tool tripped.

    ``guardrail`` names it, ``stage`` says where (``"input"``, ``"output"``
    or ``"tool"``), ``info`` is what the guardrail returned with its verdict
    (``None`` for a plain ``True``). ``halt`` is set for a tool guardrail
    that asked to end the agent's run rather than tell the model.
    """

    def __init__(
        self, message: str, *, guardrail: str, stage: str, info: object = None, halt: bool = False
    ) -> None:
        self.guardrail = guardrail
        self.stage = stage
        self.info = info
        self.halt = halt
        super().__init__(message)


class GuardrailError(TrioDSPyError, TypeError):
    """A guardrail returned something that is not a verdict.

    A guardrail returns ``True``/``False``, a :class:`~trio_dspy.GuardrailResult`,
    or (a module) a prediction with a boolean ``tripped`` field.
    """


class UsageLimitExceeded(TrioDSPyError):
    """An LM call would go over a :func:`~trio_dspy.usage_limits` budget: it was not sent.

    ``limit`` names the bound (``"max_requests"``, ``"max_total_tokens"`` or
    ``"max_cost"``), ``maximum`` is its value and ``used`` what the block had
    used or reserved when the call was refused.
    """

    def __init__(self, message: str, *, limit: str, maximum: float, used: float) -> None:
        self.limit = limit
        self.maximum = maximum
        self.used = used
        super().__init__(message)


class ToolDenied(ToolError):
    """A tool that needs approval (``td.Tool(fn, requires_approval=True)``) was denied.

    Inside an agent it becomes the observation, so the model learns the call
    was refused and why; ``note`` is what the person deciding wrote.
    """

    def __init__(self, message: str, *, tool: str, note: str | None = None) -> None:
        self.note = note
        super().__init__(message, tool=tool)


class ApprovalRequired(TrioDSPyError):
    """A tool call needs a person's approval before it runs: the run stopped.

    ``requests`` lists the calls waiting (each with ``call_id``, ``tool`` and
    ``arguments``). Inside ``td.durable(run_id, journal)`` everything before
    the stop is recorded and ``run_id`` names the run: record a decision for
    each request with ``await journal.decide(run_id, call_id, approved=...)``
    (from any process) and run the program again with the same ``run_id``.
    Outside a durable run ``run_id`` is ``None`` and the run cannot resume:
    decide inline with ``td.context(approver=async_fn)``.
    """

    def __init__(self, message: str, *, run_id: str | None, requests: tuple[object, ...]) -> None:
        self.run_id = run_id
        self.requests = requests
        super().__init__(message)


class JournalError(TrioDSPyError):
    """A durable run's journal (``td.Journal``, ``td.RedisJournal``) could not be used.

    ``journal`` names where it lives (a file path, or a Redis URL without its
    password), ``run_id`` which run (``None`` for work on the whole journal).
    """

    def __init__(self, message: str, *, journal: str, run_id: str | None = None) -> None:
        self.journal = journal
        self.run_id = run_id
        super().__init__(message)


class JournalUnavailable(JournalError):
    """The journal could not be reached or written: Redis is down or its URL is
    wrong, or the SQLite file cannot be opened or stayed locked. Raised before
    the step it was to record is returned (and before any model is called when
    the run is entered): a durable run never goes on without its journal."""


class JournalCorrupt(JournalError):
    """The journal holds something this version cannot read: a file that is not
    a SQLite database (or is damaged), a journal of a newer layout, or a stored
    step that is not what a journal writes. Nothing was changed; restore a
    backup, upgrade trio_dspy, or use another journal or run id."""


class JournalBusy(JournalError):
    """Another task or process is running the same run id, and it was still
    running after the ``wait`` given to ``td.durable``. A run id is run by one
    holder at a time; the others wait, so steps are never interleaved."""


class JournalMismatch(JournalError):
    """A step's request differs from what the journal recorded for it: the program
    changed since the run was recorded.

    ``step`` is the step's key, ``kind`` ``"lm"`` or ``"tool"``. Use a new run
    id, ``await journal.delete(run_id)``, or enter the run with
    ``on_mismatch="rerun"`` to run such steps live and record them again.
    """

    def __init__(self, message: str, *, journal: str, run_id: str, step: str, kind: str) -> None:
        self.step = step
        self.kind = kind
        super().__init__(message, journal=journal, run_id=run_id)
