"""td.serving.app over real sockets, and ``trio-dspy serve``: every test runs on both servers,
hypercorn's trio worker and the lean h11 server (``--server h11``).

These use the real clock (real sockets and a server's own tasks) with small
timeouts; the in-process tests of every route are in test_serving.py.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
import trio

import trio_dspy as td
from trio_dspy.demo.coffee_shop import CoffeeShopAgent
from trio_dspy.serving.run import SERVERS, serve
from trio_dspy.testing.sim_config import Latency, SimConfig
from trio_dspy.testing.sim_server import SimServer, serve_sim

pytest.importorskip("hypercorn")

REQUEST = {"request": "A large latte please", "mood": "happy"}


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    """Each server ``trio-dspy serve --server`` offers, in turn."""
    name: str = request.param
    return name


@asynccontextmanager
async def served_app(app: td.serving.ServingApp, server: str) -> AsyncIterator[str]:
    """``app`` served by ``server`` on a free loopback port; yields its base URL."""
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            functools.partial(serve, app, "127.0.0.1", 0, shutdown=stop.wait, server=server)
        )
        try:
            yield binds[0]
        finally:
            stop.set()


@asynccontextmanager
async def shop_server(
    server: str, latency: float = 0.0, **kwargs: object
) -> AsyncIterator[tuple[str, SimServer, td.serving.ServingApp]]:
    async with serve_sim(SimConfig(latency=Latency.parse(str(latency)))) as sim:
        lm = td.LM("openai/sim-model", base_url=sim.base_url, api_key="k")
        app = td.serving.app({"shop": CoffeeShopAgent()}, **kwargs)  # type: ignore[arg-type]
        async with lm:
            with td.context(lm=lm):
                async with served_app(app, server) as url:
                    yield url, sim, app


async def test_a_typed_round_trip_over_http(server: str) -> None:
    with trio.fail_after(30):
        async with shop_server(server) as (url, sim, _), httpx.AsyncClient(base_url=url) as client:
            reply = await client.post("/programs/shop", json=REQUEST)
            listing = await client.get("/programs")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["outputs"]["action"]["_type"] in {
        "MakeDrink",
        "RefundOrder",
        "TellJoke",
        "EscalateToManager",
        "AnswerQuestion",
    }
    assert isinstance(body["outputs"]["reply"], str)
    assert body["usage"]["requests"] == sim.stats.ok >= 1
    assert listing.json()["programs"]["shop"]["input_schema"]["properties"]["mood"]["enum"]


async def test_the_stream_arrives_as_server_sent_events_over_http(server: str) -> None:
    events: list[tuple[str, object]] = []
    with trio.fail_after(30):
        async with (
            shop_server(server) as (url, _, _),
            httpx.AsyncClient(base_url=url) as client,
            client.stream("POST", "/programs/shop/stream", json=REQUEST) as response,
        ):
            assert response.headers["content-type"].startswith("text/event-stream")
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    events.append((event, json.loads(line[6:])))
    kinds = [k for k, _ in events]
    assert "chunk" in kinds and "status" in kinds
    assert kinds[-1] == "prediction" and kinds.count("prediction") == 1


async def test_a_body_over_the_limit_is_413_over_http(server: str) -> None:
    with trio.fail_after(30):
        async with (
            shop_server(server, max_body_bytes=1000) as (url, _, _),
            httpx.AsyncClient(base_url=url) as client,
        ):
            reply = await client.post("/programs/shop", content=b"x" * 100_000)
    assert reply.status_code == 413


async def test_a_client_that_hangs_up_over_http_frees_its_slot_and_abandons_the_model_request(
    server: str,
) -> None:
    with trio.fail_after(30):
        async with shop_server(server, latency=20, max_concurrency=1) as (url, sim, app):
            host, port = url.removeprefix("http://").split(":")
            body = json.dumps(REQUEST).encode()
            head = (
                f"POST /programs/shop HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n"
            ).encode()
            stream = await trio.open_tcp_stream(host, int(port))
            await stream.send_all(head + body)
            while sim.stats.in_flight == 0:  # noqa: ASYNC110 - another server's counter
                await trio.sleep(0.01)
            assert app.in_flight == 1
            start = trio.current_time()
            await stream.aclose()
            while sim.stats.in_flight or app.in_flight:  # noqa: ASYNC110
                await trio.sleep(0.01)
            assert trio.current_time() - start < 5  # not the model's 20 s
            assert sim.stats.ok == 0
            while sim.http is None or sim.http.requests_abandoned == 0:  # noqa: ASYNC110
                await trio.sleep(0.01)
            # The slot is free: the next request is admitted, not refused with 503.
            async with httpx.AsyncClient(base_url=url) as client:
                assert (await client.get("/health")).json()["in_flight"] == 0


# ------------------------------------------------------------ the command
SERVE = [sys.executable, "-m", "trio_dspy.cli", "serve"]


@pytest.fixture
def sim_process() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "trio_dspy.cli", "serve-sim", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.kill()
        proc.communicate(timeout=10)


@pytest.mark.slow
def test_trio_dspy_serve_serves_a_module_attribute_until_sigint(
    sim_process: str, server: str
) -> None:
    env = {**os.environ, "SERVE_KEY": "s3cret"}
    proc = subprocess.Popen(
        [
            *SERVE,
            "tests.serve_target:programs",
            "--port",
            "0",
            "--lm",
            "openai/sim-model",
            "--lm-base-url",
            sim_process,
            "--api-key-env",
            "SERVE_KEY",
            "--request-timeout",
            "20",
            "--server",
            server,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.stderr else url
        auth = {"authorization": "Bearer s3cret"}
        reply = httpx.post(
            f"{url}/programs/qa", json={"question": "2+2?"}, headers=auth, timeout=20
        )
        assert reply.status_code == 200, reply.text
        assert isinstance(reply.json()["outputs"]["confidence"], float)
        assert (
            httpx.post(f"{url}/programs/qa", json={"question": "q"}, timeout=20).status_code == 401
        )
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "s3cret" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


@pytest.mark.slow
def test_trio_dspy_serve_says_what_is_wrong_with_its_target() -> None:
    cases = {
        "nocolon": "MODULE:ATTR",
        "no_such_module_xyz:app": "cannot import",
        "tests.serve_target:nothing": "no attribute",
        "tests.serve_target:REQUEST_NOT_THERE": "no attribute",
    }
    for target, message in cases.items():
        result = subprocess.run([*SERVE, target], capture_output=True, text=True, timeout=60)
        assert result.returncode == 1 and message in result.stderr, result.stderr
    result = subprocess.run(
        [*SERVE, "tests.serve_target:app", "--max-concurrency", "3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "already an app" in result.stderr


async def test_the_demo_serves_the_coffee_shop_answers_every_customer_and_stops_when_told(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from trio_dspy.demo.served import run_serve_demo
    from trio_dspy.serving import run

    monkeypatch.setattr(run, "serve", functools.partial(serve, server=server))

    out = io.StringIO()
    stop = trio.Event()
    statuses: list[int] = []

    async def demo() -> None:
        statuses.extend(await run_serve_demo(count=4, time_scale=0.01, port=0, out=out, stop=stop))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(demo)
            while "Ctrl-C stops" not in out.getvalue():  # noqa: ASYNC110 - printed by the demo
                await trio.sleep(0.05)
            url = out.getvalue().split("Serving the coffee shop at ", 1)[1].split()[0]
            async with httpx.AsyncClient(base_url=url) as client:
                page = await client.get("/")
            stop.set()
    assert statuses == [200, 200, 200, 200]
    assert page.status_code == 200 and "playground" in page.text
    assert "oat milk, coming right up" in out.getvalue()


def test_demo_serve_is_a_demo_option() -> None:
    from trio_dspy.cli import build_parser

    args = build_parser().parse_args(["demo", "--serve", "--port", "0"])
    assert args.serve and args.port == 0


@pytest.mark.slow
def test_trio_dspy_serve_stops_at_once_when_only_idle_keep_alive_connections_are_open(
    server: str,
) -> None:
    command = [*SERVE, "tests.serve_target:app", "--port", "0", "--graceful-timeout", "20"]
    proc = subprocess.Popen(
        [*command, "--server", server],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/health").status_code == 200  # the connection stays open
            start = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert time.monotonic() - start < 5  # not the 20 s grace
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


async def test_a_request_answered_over_http_is_not_logged_as_a_client_that_hung_up(
    caplog: pytest.LogCaptureFixture, server: str
) -> None:
    # hypercorn tells the app `http.disconnect` once the answer is sent, as
    # ASGI says: that is no hang-up, and nothing is left to cancel.
    caplog.set_level(logging.INFO, logger="trio_dspy")
    lm = td.testing.DummyLM([{"answer": "4"}], cycle=True)
    app = td.serving.app({"qa": td.Predict("question -> answer")})
    with trio.fail_after(30), td.context(lm=lm):
        async with served_app(app, server) as url, httpx.AsyncClient(base_url=url) as client:
            for _ in range(5):
                reply = await client.post("/programs/qa", json={"question": "2+2?"})
                assert reply.status_code == 200, reply.text
    assert "serving.client_gone" not in caplog.text


async def test_answers_over_http_carry_a_date_but_do_not_name_the_server_software(
    server: str,
) -> None:
    app = td.serving.app({"qa": td.Predict("question -> answer")})
    with trio.fail_after(30):
        async with served_app(app, server) as url, httpx.AsyncClient(base_url=url) as client:
            reply = await client.get("/health")
    assert reply.status_code == 200
    assert "date" in reply.headers  # RFC 9110: an origin server with a clock sends one
    assert "server" not in reply.headers
