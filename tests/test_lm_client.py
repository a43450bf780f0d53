"""The LM class: provider dispatch, options, secrets, usage, history, trio-run safety."""

from __future__ import annotations

import pickle
from typing import Any

import httpx
import pytest
import structlog
import trio

import trio_dspy as td
from trio_dspy.errors import ConfigurationError
from trio_dspy.http import Secret
from trio_dspy.lm import LM, LMRequest, Message, register_provider
from trio_dspy.lm.anthropic import AnthropicLM
from trio_dspy.lm.openai import OpenAILM

from .test_lm_support import KEY, Scripted, ok

REQUEST = LMRequest([Message("user", "hi")])


def test_model_prefix_picks_the_provider_class() -> None:
    openai = LM("openai/gpt-4o-mini", api_key="x")
    anthropic = LM("anthropic/claude-sonnet", api_key="x")
    assert type(openai) is OpenAILM and type(anthropic) is AnthropicLM
    assert isinstance(openai, LM) and isinstance(anthropic, LM)
    assert isinstance(openai, td.BaseLM)


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(
        ConfigurationError, match="known providers are anthropic, gemini, .*, openai, vllm"
    ):
        LM("mistral/large")
    with pytest.raises(ConfigurationError, match="'provider/name'"):
        LM("gpt-4o")


def test_provider_subclass_rejects_another_providers_model() -> None:
    with pytest.raises(ConfigurationError, match="openai/<model>"):
        OpenAILM("anthropic/claude")


def test_register_provider_adds_a_prefix() -> None:
    class LocalLM(OpenAILM):
        provider = "local"

    register_provider("local", LocalLM)
    lm = LM("local/llama", base_url="http://127.0.0.1:1/v1")
    assert type(lm) is LocalLM and lm.model_name == "llama"


def test_telemetry_facts() -> None:
    lm = LM("openai/gpt-4o-mini", base_url="http://127.0.0.1:8123/v1", api_key="x")
    assert lm.provider == "openai"
    assert lm.model == "openai/gpt-4o-mini" and lm.model_name == "gpt-4o-mini"
    assert (lm.server_address, lm.server_port) == ("127.0.0.1", 8123)
    remote = LM("anthropic/claude", api_key="x")
    assert (remote.server_address, remote.server_port) == ("api.anthropic.com", 443)


@pytest.mark.parametrize(
    "options",
    [
        {"max_retries": -1},
        {"timeout": 0},
        {"attempt_timeout": -1},
        {"max_concurrency": 0},
        {"rpm": 0},
        {"tpm": -5},
        {"max_connections": 0},
        {"base_url": "ftp://example.com"},
        {"base_url": "not a url"},
    ],
)
def test_bad_options_are_rejected(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LM("openai/m", **options)


def test_bad_cache_option_is_rejected() -> None:
    with pytest.raises(TypeError, match="cache must be"):
        LM("openai/m", cache=3.5)  # type: ignore[arg-type]


def test_key_never_appears_in_repr_or_pickles() -> None:
    lm = LM("openai/m", api_key=KEY, base_url="http://127.0.0.1:9/v1")
    for text in (repr(lm), str(lm), repr(lm._http), repr(vars(lm))):
        assert KEY not in text
    with pytest.raises(ValueError, match="must not carry credentials") as info:
        LM("openai/m", api_key=KEY, base_url="http://user:pw@127.0.0.1:9/v1")
    assert "pw" not in str(info.value)
    assert repr(Secret(KEY)) == "Secret('***')"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(Secret(KEY))


async def test_logs_never_carry_the_key(autojump_clock: Any) -> None:
    server = Scripted(
        httpx.Response(429, json={"error": {"message": f"limit for key {KEY}"}}), ok()
    )
    with structlog.testing.capture_logs() as logs:
        await server.lm().request(REQUEST)
    assert any(entry["event"] == "lm.retry" for entry in logs)
    assert KEY not in repr(logs)


async def test_usage_is_tracked_and_history_recorded() -> None:
    server = Scripted(ok("one", usage=(10, 5)), ok("two", usage=(7, 3)))
    lm = server.lm(history_size=1)
    with td.track_usage() as usage:
        await lm.request(REQUEST)
        await lm.request(REQUEST)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (17, 8, 25)
    assert len(lm.history) == 1 and lm.history[0].response.text == "two"


async def test_defaults_apply_and_request_params_win() -> None:
    server = Scripted()
    lm = server.lm(temperature=0.0, max_tokens=10)
    await lm.request(LMRequest([Message("user", "hi")], params={"max_tokens": 99}))
    body = server.bodies[0]
    assert (body["temperature"], body["max_tokens"]) == (0.0, 99)


async def test_async_with_closes_and_the_lm_stays_usable() -> None:
    server = Scripted()
    lm = server.lm()
    async with lm as entered:
        assert entered is lm
        await lm.request(REQUEST)
    assert lm._http._pools.peek() is None  # connections released
    await lm.request(REQUEST)  # a new pool is opened on demand
    await lm.aclose()
    assert len(server.requests) == 2


def test_an_lm_made_at_import_time_works_across_trio_runs() -> None:
    server = Scripted()
    lm = server.lm(max_concurrency=2, rpm=600, tpm=100_000, cache=True)
    clients = []

    async def use(text: str) -> str:
        clients.append(lm._http._pools.get())
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(lm.request, REQUEST)
        return (await lm.request(LMRequest([Message("user", text)]))).text

    assert trio.run(use, "first") == "ok"
    assert trio.run(use, "second") == "ok"
    assert clients[0] is not clients[1]
