"""``trio-dspy demo --stream``: every customer served at once, their replies shown as they come.

Each customer's agent runs through :func:`~trio_dspy.streamify` in its own
request scope, all of them child tasks of one nursery. Every item is printed
the moment it arrives, prefixed with the customer's number: the agent's
status lines (which tool it calls, when the tool is done) and its ``reply``
so far, each time a chunk of it arrives. The table of the concurrent pass follows.

The agent runs DSPy's text loop (``mode="text"``), whose last step writes the
reply as text, so it arrives in pieces; with native tool calling the reply
comes as the ``finish`` tool's arguments, in one piece.
"""

from __future__ import annotations

import sys
import textwrap
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

import trio_dspy as td

from ..telemetry import JsonlExporter, collect
from .coffee_shop import CoffeeShopAgent
from .runner import (
    Served,
    customer_overrides,
    demo_model,
    describe_action,
    print_table,
    table_width,
)
from .story import Customer, customers

__all__ = ["run_stream_demo", "serve_streamed"]


def _say(out: Any, width: int, index: int, kind: str, text: str) -> None:
    prefix = f"#{index:<2} {kind:6} "
    lines = textwrap.wrap(
        " ".join(text.split()), width, initial_indent=prefix, subsequent_indent=" " * len(prefix)
    )
    print("\n".join(lines) or prefix.rstrip(), file=out, flush=True)


async def serve_streamed(
    agent: CoffeeShopAgent,
    index: int,
    customer: Customer,
    *,
    out: Any = sys.stdout,
    width: int = 100,
    customer_timeout: float | None = None,
) -> Served:
    """Serve one customer through ``streamify``, printing each item as it arrives."""
    start = trio.current_time()
    stream_agent = td.streamify(agent, listen=["reply"])
    prediction: Any = None
    so_far = ""
    try:
        overrides = customer_overrides(customer)
        with td.request_scope("customer", timeout=customer_timeout, **overrides) as req:
            async with stream_agent(request=customer.request, mood=customer.mood) as stream:
                async for item in stream:
                    if isinstance(item, td.StatusMessage):
                        _say(out, width, index, "status", item.text)
                    elif isinstance(item, td.StreamResponse):
                        so_far += item.chunk  # the reply as it grows
                        _say(out, width, index, "reply", so_far)
                    else:
                        prediction = item
        action, reply = describe_action(prediction.action), prediction.reply
    except td.errors.TrioDSPyError as exc:
        action, reply = "error", f"{type(exc).__name__}: {exc}"
        req = None
    _say(out, width, index, "done", f"in {trio.current_time() - start:.2f}s")
    tokens = req.usage.total_tokens if req is not None else 0
    return Served(customer, action, reply, trio.current_time() - start, tokens)


async def run_stream_demo(
    *,
    count: int = 4,
    time_scale: float = 0.1,
    model: str | None = None,
    base_url: str | None = None,
    spans: Path | None = None,
    customer_timeout: float | None = None,
    out: Any = sys.stdout,
    width: int | None = None,
) -> float:
    """Serve ``count`` customers at once, streamed; print the items, then the table.

    ``spans``: a JSONL file to write every span to (none by default).
    Returns the wall time of the pass (seconds).
    """
    people = customers(count)
    columns = width if width is not None else table_width()
    async with AsyncExitStack() as stack:
        lm, where, _ = await demo_model(stack, people, time_scale, model, base_url)
        await stack.enter_async_context(collect(*([JsonlExporter(spans)] if spans else [])))
        print(textwrap.fill(f"Serving {len(people)} customers with {where}", columns), file=out)
        print(f"{'':4}Every line appears the moment it arrives.\n", file=out)
        agent = CoffeeShopAgent(mode="text")
        served: list[Served | None] = [None] * len(people)
        timeout = customer_timeout
        start = trio.current_time()

        async def one(index: int, customer: Customer) -> None:
            served[index] = await serve_streamed(
                agent, index + 1, customer, out=out, width=columns, customer_timeout=timeout
            )

        with td.context(lm=lm):
            async with trio.open_nursery() as nursery:
                for index, customer in enumerate(people):
                    nursery.start_soon(one, index, customer)
        total = trio.current_time() - start
    title = "Streamed: every customer a child task of one nursery"
    print_table(title, [s for s in served if s is not None], total, out, columns)
    return total
