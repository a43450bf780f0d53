"""What LM(...) accepts: a real signature, known parameters only, DSPy's keyword form."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from trio_dspy.errors import ConfigurationError
from trio_dspy.lm import LM, LMRequest, Message
from trio_dspy.lm.openai import OpenAILM

from .test_lm_support import Scripted

REQUEST = LMRequest([Message("user", "hi")])


def test_a_misspelt_parameter_is_refused_with_a_suggestion() -> None:
    with pytest.raises(TypeError, match=r"'temprature'; did you mean 'temperature'\?"):
        LM("openai/m", api_key="k", temprature=0.1)
    with pytest.raises(TypeError, match=r"extra_body=\{'frobnicate'"):
        LM("openai/m", api_key="k", frobnicate=1)
    with pytest.raises(TypeError, match="did you mean 'max_retries'"):
        LM("openai/m", api_key="k", max_retires=2)
    with pytest.raises(TypeError, match="it is called 'base_url' here"):
        LM("openai/m", api_key="k", api_base="http://127.0.0.1:1/v1")


def test_the_model_may_be_given_by_keyword_as_in_dspy() -> None:
    lm = LM(model="openai/gpt-4o-mini", api_key="k")
    assert isinstance(lm, OpenAILM) and lm.model_name == "gpt-4o-mini"
    with pytest.raises(ConfigurationError, match="does not name a provider"):
        LM(model="gpt-4o-mini")


def test_the_constructor_has_a_real_signature() -> None:
    parameters = inspect.signature(LM.__init__).parameters
    for name in (
        "model",
        "base_url",
        "api_key",
        "temperature",
        "max_tokens",
        "top_p",
        "stop",
        "seed",
        "extra_body",
        "timeout",
        "attempt_timeout",
        "connect_timeout",
        "read_timeout",
        "max_response_bytes",
        "max_retries",
        "max_concurrency",
        "rpm",
        "tpm",
        "cache",
    ):
        assert name in parameters, name


async def test_sampling_parameters_known_ones_and_extra_body_reach_the_request() -> None:
    server = Scripted()
    options: dict[str, Any] = {"presence_penalty": 0.5}
    lm = server.lm(
        temperature=0.2,
        max_tokens=64,
        stop=["\n"],
        seed=7,
        extra_body={"repetition_penalty": 1.1, "top_k": 5},
        **options,
    )
    await lm.request(REQUEST)
    body = server.bodies[0]
    assert body["temperature"] == 0.2 and body["max_tokens"] == 64
    assert body["stop"] == ["\n"] and body["seed"] == 7
    assert body["presence_penalty"] == 0.5
    assert body["repetition_penalty"] == 1.1 and body["top_k"] == 5
    assert "top_p" not in body  # unset parameters are not sent
    await lm.request(LMRequest([Message("user", "x")], params={"temperature": 1.0}))
    assert server.bodies[1]["temperature"] == 1.0  # the request's own value wins


def test_repr_of_an_instance_whose_constructor_raised() -> None:
    lm = OpenAILM.__new__(OpenAILM)
    with pytest.raises(ValueError, match="whitespace"):
        lm.__init__("openai/m", api_key="sk-abc\n")  # type: ignore[misc]
    assert repr(lm).startswith("OpenAILM(")
    blank = OpenAILM.__new__(OpenAILM)
    with pytest.raises(ConfigurationError):
        blank.__init__("anthropic/m")  # type: ignore[misc]
    assert repr(blank) == "OpenAILM('?', base_url='?')"
