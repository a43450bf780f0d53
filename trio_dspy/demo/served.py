"""``trio-dspy demo --serve``: the coffee-shop agent served over HTTP, with its playground.

The agent is served by :func:`trio_dspy.serving.app` on hypercorn's trio
worker (extra ``serve``), on the story's simulated model (or ``--model``).
The story's customers are sent to it at once as HTTP clients and their
replies printed; then it keeps serving until Ctrl-C: open the printed URL
for the playground (type one of the story's requests to get its scripted
answer), or ``POST /programs/shop``.
"""

from __future__ import annotations

import functools
import signal
import sys
import textwrap
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import attrs
import trio

import trio_dspy as td

from ..telemetry import JsonlExporter, collect
from .coffee_shop import CoffeeShopAgent
from .runner import demo_model
from .story import Customer, customers

__all__ = ["run_serve_demo"]


@attrs.frozen
class _Answer:
    status: int
    seconds: float
    reply: str


async def _send(client: Any, index: int, customer: Customer, answers: list[_Answer | None]) -> None:
    start = trio.current_time()
    body = {"request": customer.request, "mood": customer.mood.value}
    response = await client.post("/programs/shop", json=body)
    payload = response.json()
    reply = (
        payload["outputs"]["reply"] if response.status_code == 200 else payload["error"]["message"]
    )
    answers[index] = _Answer(response.status_code, trio.current_time() - start, str(reply))


async def run_serve_demo(
    *,
    count: int = 4,
    time_scale: float = 0.1,
    model: str | None = None,
    base_url: str | None = None,
    spans: Path | None = None,
    customer_timeout: float | None = None,
    out: Any = sys.stdout,
    width: int | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    stop: trio.Event | None = None,
) -> list[int]:
    """Serve the agent, send it the story's customers at once, then serve until stopped.

    Stops on Ctrl-C or SIGTERM, or when ``stop`` is set. Returns the HTTP
    status of each customer's answer.

    Raises:
        ConfigurationError: hypercorn is not installed (the ``serve`` extra).
        OSError: the address cannot be bound.
    """
    import httpx

    from ..serving.run import serve

    people = customers(count)
    columns = width or 100
    if stop is None:
        stop = trio.Event()
    answers: list[_Answer | None] = [None] * len(people)
    async with AsyncExitStack() as stack:
        lm, where, _ = await demo_model(stack, people, time_scale, model, base_url)
        await stack.enter_async_context(collect(*([JsonlExporter(spans)] if spans else [])))
        # Text mode: the reply is written as text, so the playground shows it growing.
        app = td.serving.app(
            {"shop": CoffeeShopAgent(mode="text")}, request_timeout=customer_timeout
        )
        with td.context(lm=lm), trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            watching = trio.CancelScope()

            async def on_signal() -> None:
                with watching:
                    async for _ in signals:
                        stop.set()
                        return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(on_signal)
                run = functools.partial(serve, app, host, port, shutdown=stop.wait)
                url = (await nursery.start(run))[0]
                print(
                    textwrap.fill(f"Serving the coffee shop at {url} with {where}", columns),
                    file=out,
                )
                async with httpx.AsyncClient(base_url=url, timeout=120) as client:
                    start = trio.current_time()
                    async with trio.open_nursery() as clients:
                        for index, customer in enumerate(people):
                            clients.start_soon(_send, client, index, customer, answers)
                    total = trio.current_time() - start
                print(f"\n{len(people)} customers sent at once over HTTP:", file=out)
                for index, answer in enumerate(answers):
                    assert answer is not None
                    line = f"#{index + 1:<2} {answer.status} {answer.seconds:5.2f}s  {answer.reply}"
                    print(textwrap.shorten(line, columns), file=out)
                print(f"all answered in {total:.2f}s\n", file=out)
                print(f"Playground: {url}/   API: {url}/openapi.json   Ctrl-C stops.", file=out)
                print("Try one of the story's requests, e.g.:", file=out)
                for customer in people[:3]:
                    print("  " + textwrap.shorten(customer.request, columns - 2), file=out)
                print(file=out, flush=True)
                await stop.wait()
                watching.cancel()  # hypercorn finishes its requests and returns by itself
    return [a.status for a in answers if a is not None]
