"""Secrets, forks and lifecycles: the edges a production deployment meets."""

from __future__ import annotations

import os

import httpx
import pytest
import trio

from trio_dspy.lm import LM, LMRequest, Message
from trio_dspy.telemetry import OtlpHttpExporter
from trio_dspy.telemetry.span import _randbytes

ASK = LMRequest([Message("user", "hi")])


def ok(request: httpx.Request) -> httpx.Response:
    body = {
        "choices": [{"message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}]
    }
    return httpx.Response(200, json=body)


@pytest.mark.parametrize("key", ["sk-abc123 ", "sk-abc\n123", "sk-ab\u00e9c"])
def test_keys_that_cannot_be_sent_are_refused_without_echo(key: str) -> None:
    with pytest.raises(ValueError, match="whitespace, control or non-ASCII") as info:
        LM("openai/m", api_key=key, base_url="http://127.0.0.1:9/v1")
    assert "abc" not in str(info.value)


def test_credentials_in_urls_are_refused_or_hidden() -> None:
    with pytest.raises(ValueError, match="must not carry credentials") as info:
        LM("openai/m", api_key="sk-12345678", base_url="http://me:hunter2@127.0.0.1:9/v1")
    assert "hunter2" not in str(info.value)
    exporter = OtlpHttpExporter("http://me:hunter2@127.0.0.1:4318", headers={"authorization": "x"})
    assert "hunter2" not in repr(exporter)


async def test_an_injected_transport_survives_async_with_lm() -> None:
    lm = LM(
        "openai/m",
        api_key="sk-12345678",
        base_url="http://127.0.0.1:9/v1",
        transport=httpx.MockTransport(ok),
    )
    for _ in range(2):  # a transport the caller owns is not closed by the LM
        async with lm:
            assert (await lm.request(ASK)).text == "hello"


async def test_leaving_async_with_lm_by_cancellation_still_closes() -> None:
    lm = LM(
        "openai/m",
        api_key="sk-12345678",
        base_url="http://127.0.0.1:9/v1",
        transport=httpx.MockTransport(ok),
        cache=True,
    )
    with trio.CancelScope() as scope:
        async with lm:
            await lm.request(ASK)
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    async with lm:  # still usable afterwards
        assert (await lm.request(ASK)).cached


def test_span_ids_differ_between_a_forked_child_and_its_parent() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report one id and leave at once
        os.write(write, _randbytes(8))
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 8)
    os.close(read)
    os.waitpid(pid, 0)
    assert child_id != _randbytes(8)
