"""The fast builders of the values every call makes: the same values as the constructors'."""

from __future__ import annotations

import attrs

from trio_dspy import messages
from trio_dspy.messages import (
    LMRequest,
    LMResponse,
    Message,
    ResponseFormat,
    ToolCall,
    ToolSpec,
    text_message,
    trusted_request,
    trusted_response,
)
from trio_dspy.primitives import Prediction, Usage


def test_the_fast_builders_set_every_field_of_their_class() -> None:
    # A field added to a class and not to its builder would be left unset.
    assert tuple(f.name for f in attrs.fields(Message)) == messages._MESSAGE_FIELDS
    assert tuple(f.name for f in attrs.fields(LMRequest)) == messages._REQUEST_FIELDS
    assert tuple(f.name for f in attrs.fields(LMResponse)) == messages._RESPONSE_FIELDS


def test_a_text_message_is_the_message_the_constructor_builds() -> None:
    for text in ("hello", "caf\u00e9 \U0001f600", ""):
        built = text_message("user", text)
        assert built == Message("user", text)
        assert repr(built) == repr(Message("user", text))
        assert hash(built) == hash(Message("user", text))


def test_a_text_message_replaces_a_lone_surrogate_as_the_constructor_does() -> None:
    assert text_message("user", "x\ud800y").content == "x\ufffdy"
    assert text_message("user", "x\ud800y") == Message("user", "x\ud800y")


def test_a_trusted_request_is_the_request_the_constructor_builds() -> None:
    system, user = Message("system", "s"), text_message("user", "u")
    fmt = ResponseFormat("json_object")
    tools = (ToolSpec("t", "d", {"type": "object"}),)
    built = trusted_request((system, user), tools, fmt, {"temperature": 0})
    expected = LMRequest(
        [system, user], tools=list(tools), response_format=fmt, params={"temperature": 0}
    )
    assert built == expected
    assert attrs.evolve(built, timeout=3.0).timeout == 3.0  # a real LMRequest


def test_a_trusted_response_is_the_response_the_constructor_builds() -> None:
    usage = Usage(3, 2, 5)
    calls = (ToolCall("c1", "search", '{"q": 1}'),)
    alternative = LMResponse("b", finish_reason="stop", model="m")
    built = trusted_response("a", calls, usage, "stop", "m", (alternative,), "why")
    expected = LMResponse(
        "a",
        tool_calls=calls,
        usage=usage,
        finish_reason="stop",
        model="m",
        alternatives=[alternative],
        reasoning="why",
    )
    assert built == expected
    assert repr(built) == repr(expected)
    assert built.cached is False
    assert built.choices == (built, alternative)


def test_a_response_a_user_builds_is_still_cleaned() -> None:
    assert LMResponse("x\ud800y", reasoning="\udc80").text == "x\ufffdy"
    assert LMResponse("x", reasoning="\udc80").reasoning == "\ufffd"


def test_a_prediction_from_completions_is_the_prediction_the_constructor_builds() -> None:
    usage = Usage(1, 2, 3)
    built = Prediction.from_completions({"answer": "2"}, usage, [{"answer": "2"}])
    assert built == Prediction(answer="2")
    assert built.usage is usage
    assert built.completions.answer == ["2"]
    several = Prediction.from_completions({"a": 1}, None, [{"a": 1}, {"a": 2}])
    assert several.completions.a == [1, 2]
    assert several.usage == Usage()
