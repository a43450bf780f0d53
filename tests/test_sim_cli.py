"""The ``trio-dspy serve-sim`` command."""

from __future__ import annotations

import httpx
import pytest
import trio

from trio_dspy import cli
from trio_dspy.testing import Fault, Latency


def test_serve_sim_arguments_become_a_config() -> None:
    args = cli.build_parser().parse_args(
        [
            "serve-sim",
            "--port",
            "0",
            "--latency",
            "lognormal:0.3,0.5",
            "--seed",
            "4",
            "--fault",
            "rate_limit:every=2,retry_after=0.5",
            "--fault",
            "reset:probability=0.1",
            "--api-key",
            "k",
            "--no-tools",
            "--context-window",
            "900",
            "--embedding-dimensions",
            "12",
        ]
    )
    config = cli.sim_config_from_args(args)
    assert config.embedding_dimensions == 12
    assert config.latency == Latency.lognormal(0.3, 0.5)
    assert config.seed == 4 and config.api_key == "k" and config.context_window == 900
    assert config.faults == (
        Fault("rate_limit", every=2, retry_after=0.5),
        Fault("reset", probability=0.1),
    )
    assert not config.supports_tools and config.supports_json_schema


def test_bad_arguments_exit_with_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["serve-sim", "--fault", "explode"])
    assert info.value.code == 2
    assert "unknown fault kind 'explode'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["serve-sim", "--latency", "soon"])
    assert cli.main([]) == 2  # no command: help, usage error


async def test_serve_until_cancelled_serves_with_the_configured_faults() -> None:
    args = cli.build_parser().parse_args(["serve-sim", "--fault", "server_error:first=1"])
    config = cli.sim_config_from_args(args)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    async with trio.open_nursery() as nursery:
        sim = await nursery.start(cli.serve_until_cancelled, config, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=sim.base_url) as client:
            first = await client.post("/chat/completions", json=body)
            second = await client.post("/chat/completions", json=body)
        nursery.cancel_scope.cancel()
    assert (first.status_code, second.status_code) == (500, 200)


async def test_serve_sim_plays_the_instruction_task_when_asked() -> None:
    from trio_dspy.testing import InstructionTask, serve_sim

    args = cli.build_parser().parse_args(["serve-sim", "--task", "instructions:3"])
    config = cli.sim_config_from_args(args)
    task = InstructionTask(seed=3)
    (example,) = task.examples(1)
    body = {
        "model": "sim-model",
        "messages": [
            {"role": "system", "content": " ".join(task.phrases)},
            {"role": "user", "content": example.question},
        ],
    }
    async with serve_sim(config) as server, httpx.AsyncClient() as client:
        reply = await client.post(f"{server.base_url}/chat/completions", json=body)
    assert example.answer in reply.json()["choices"][0]["message"]["content"]
    with pytest.raises(SystemExit):
        cli.main(["serve-sim", "--task", "riddles"])
