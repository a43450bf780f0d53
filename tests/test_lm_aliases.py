"""``LM("ollama/...")`` and the other aliases of OpenAI-compatible servers."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import trio_dspy as td
from trio_dspy.lm import known_providers
from trio_dspy.lm.compatible import GeminiLM, LMStudioLM, OllamaLM
from trio_dspy.lm.openai import OpenAILM
from trio_dspy.messages import LMRequest, Message, ResponseFormat, ToolSpec
from trio_dspy.testing import SimConfig, serve_sim

ALIASES = {
    "ollama": ("http://localhost:11434/v1", "OLLAMA_API_KEY"),
    "lmstudio": ("http://localhost:1234/v1", "LMSTUDIO_API_KEY"),
    "vllm": ("http://localhost:8000/v1", "VLLM_API_KEY"),
    "llamacpp": ("http://localhost:8080/v1", "LLAMA_API_KEY"),
    "groq": ("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "gemini": ("https://generativelanguage.googleapis.com/v1beta/openai/", "GEMINI_API_KEY"),
}


@pytest.fixture(autouse=True)
def _no_alias_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for alias, (_, key_env) in ALIASES.items():
        monkeypatch.delenv(key_env, raising=False)
        monkeypatch.delenv(f"{alias.upper()}_BASE_URL", raising=False)


class Recorder:
    """A transport that answers every request with one completion and keeps it."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = {
            "model": "m",
            "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        return httpx.Response(200, json=body)


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_an_alias_is_an_openai_client_at_the_servers_usual_address(alias: str) -> None:
    lm = td.LM(f"{alias}/some-model")
    assert isinstance(lm, OpenAILM)
    assert lm.provider == alias  # what spans and logs name
    assert lm.model_name == "some-model"
    assert lm.base_url == ALIASES[alias][0].rstrip("/")
    assert alias in known_providers()


@pytest.mark.parametrize("alias", sorted(ALIASES))
async def test_an_alias_sends_its_key_from_its_environment_variable(
    alias: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    monkeypatch.setenv(ALIASES[alias][1], "secret-key")
    lm = td.LM(f"{alias}/m", transport=httpx.MockTransport(recorder))
    await lm.request(LMRequest([Message("user", "hi")]))
    sent = recorder.requests[0]
    assert sent.headers["authorization"] == "Bearer secret-key"
    assert str(sent.url) == ALIASES[alias][0].rstrip("/") + "/chat/completions"


async def test_a_local_alias_sends_no_key_when_none_is_set() -> None:
    recorder = Recorder()
    lm = td.LM("ollama/llama3", transport=httpx.MockTransport(recorder))
    await lm.request(LMRequest([Message("user", "hi")]))
    assert "authorization" not in recorder.requests[0].headers


def test_base_url_argument_and_environment_override_the_alias_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OLLAMA_BASE_URL", "http://gpu-box:11434/v1")
    assert td.LM("ollama/llama3").base_url == "http://gpu-box:11434/v1"
    lm = td.LM("ollama/llama3", base_url="http://127.0.0.1:9999/v1")
    assert lm.base_url == "http://127.0.0.1:9999/v1"
    # The generic client's variables do not leak into an alias.
    monkeypatch.setenv("OPENAI_BASE_URL", "http://elsewhere/v1")
    monkeypatch.delenv("OLLAMA_BASE_URL")
    assert td.LM("ollama/llama3").base_url == "http://localhost:11434/v1"


def test_an_alias_model_needs_a_name() -> None:
    with pytest.raises(td.errors.ConfigurationError, match="ollama"):
        OllamaLM("openai/llama3")


async def test_lmstudio_alias_never_asks_for_json_object() -> None:
    class Pick(td.Signature):
        """Pick a number."""

        question: str = td.InputField()
        number: int = td.OutputField()

    async with (
        serve_sim(SimConfig(profile="lmstudio")) as sim,
        td.LM("lmstudio/sim-model", base_url=sim.base_url) as lm,
    ):
        assert isinstance(lm, LMStudioLM)
        with td.context(lm=lm, adapter=td.JSONAdapter()):
            pred = await td.Predict(Pick)(question="a number")
    assert isinstance(pred.number, int)
    assert [b["response_format"]["type"] for b in sim.requests] == ["json_schema"]


async def test_gemini_alias_keeps_json_schema_by_leaving_out_what_gemini_refuses() -> None:
    class Pick(td.Signature):
        """Pick a number."""

        question: str = td.InputField()
        number: int = td.OutputField()
        sure: bool = td.OutputField()

    async with (
        serve_sim(SimConfig(profile="gemini")) as sim,
        td.LM("gemini/sim-model", base_url=sim.base_url, api_key="k") as lm,
    ):
        assert isinstance(lm, GeminiLM)
        with td.context(lm=lm, adapter=td.JSONAdapter()):
            pred = await td.Predict(Pick)(question="a number")
    assert isinstance(pred.number, int) and isinstance(pred.sure, bool)
    assert lm.response_format_level == "json_schema"
    sent = json.dumps(sim.requests[0]["response_format"])
    assert "additionalProperties" not in sent and '"number"' in sent
    assert sim.stats.errors == 0


def test_gemini_alias_keeps_fields_named_like_refused_keywords() -> None:
    lm = GeminiLM("gemini/m", api_key="k")
    params: dict[str, Any] = {
        "type": "object",
        "properties": {"additionalProperties": {"type": "string", "additionalProperties": 1}},
        "additionalProperties": False,
    }
    spec = ToolSpec("f", "F.", params)
    body = lm.build_body(LMRequest([Message("user", "hi")], tools=(spec,)), None)
    sent = body["tools"][0]["function"]["parameters"]
    assert sent == {"type": "object", "properties": {"additionalProperties": {"type": "string"}}}


@pytest.mark.parametrize("alias", sorted(ALIASES))
async def test_each_alias_gets_typed_answers_from_its_simulated_server(alias: str) -> None:
    class Pick(td.Signature):
        """Pick numbers."""

        question: str = td.InputField()
        numbers: list[int] = td.OutputField()
        note: str | None = td.OutputField()

    async with (
        serve_sim(SimConfig(profile=alias)) as sim,
        td.LM(f"{alias}/sim-model", base_url=sim.base_url) as lm,
    ):
        with td.context(lm=lm, adapter=td.JSONAdapter()):
            pred = await td.Predict(Pick)(question="three numbers")
    assert all(isinstance(n, int) for n in pred.numbers)
    assert lm.provider == alias


async def test_gemini_alias_sends_json_object_without_a_schema_beside_it() -> None:
    request = LMRequest(
        [Message("user", "Answer in JSON.")],
        response_format=ResponseFormat("json_object", schema={"type": "object"}),
    )
    async with (
        serve_sim(SimConfig(profile="gemini")) as sim,
        td.LM("gemini/sim-model", base_url=sim.base_url) as lm,
    ):
        await lm.request(request)
    assert sim.requests[0]["response_format"] == {"type": "json_object"}
    assert sim.stats.errors == 0
