"""``trio-dspy demo``: the coffee shop, sequential first, then concurrent.

Each customer is served by the same agent in its own request scope (id,
settings overrides, usage, root span). The sequential pass awaits them one
after another; the concurrent pass starts each as a child task of one
nursery. Against the simulated server (the default) each customer's model
latency is the story's, scaled by ``--time-scale``; with ``--model`` it talks
to a real endpoint instead.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import sys
import textwrap
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import attrs
import trio

import trio_dspy as td

from ..telemetry import JsonlExporter, collect
from ..testing import SimConfig, serve_sim
from .coffee_shop import CoffeeShopAgent, CustomerMood
from .story import Customer, customers, script
from .terminal import HelpFormatter, exit_quietly_on_broken_pipe, plain_text

__all__ = ["main", "run_demo"]


@attrs.frozen
class Served:
    """What happened to one customer."""

    customer: Customer
    action: str
    reply: str
    latency: float
    tokens: int


def customer_overrides(customer: Customer) -> dict[str, Any]:
    # An upset customer gets a more careful (lower temperature) model; the
    # override lives in that customer's scope only.
    if customer.mood is CustomerMood.upset:
        return {"lm_kwargs": {"temperature": 0.2}}
    return {}


async def serve(
    agent: CoffeeShopAgent, customer: Customer, customer_timeout: float | None
) -> Served:
    """Serve one customer inside its own request scope."""
    start = trio.current_time()
    try:
        overrides = customer_overrides(customer)
        with td.request_scope("customer", timeout=customer_timeout, **overrides) as req:
            pred = await agent(request=customer.request, mood=customer.mood)
        action, reply = describe_action(pred.action), pred.reply
    except td.errors.TrioDSPyError as exc:
        action, reply = "error", f"{type(exc).__name__}: {exc}"
        req = None
    tokens = req.usage.total_tokens if req is not None else 0
    return Served(customer, action, reply, trio.current_time() - start, tokens)


def describe_action(action: Any) -> str:
    name = type(action).__name__
    if name == "MakeDrink":
        o = action.order
        return f"MakeDrink({o.size}{' iced' if o.iced else ''} {o.name}, {action.order_id})"
    if name == "RefundOrder":
        return f"RefundOrder({action.order_id}, ${action.amount:.2f})"
    return name


async def sequential(
    people: list[Customer], customer_timeout: float | None
) -> tuple[list[Served], float]:
    """Serve the customers one after another."""
    agent = CoffeeShopAgent()
    start = trio.current_time()
    served = [await serve(agent, c, customer_timeout) for c in people]
    return served, trio.current_time() - start


async def concurrent(
    people: list[Customer], customer_timeout: float | None
) -> tuple[list[Served], float]:
    """Serve every customer at once, each a child task of one nursery."""
    agent = CoffeeShopAgent()
    served: list[Served | None] = [None] * len(people)
    start = trio.current_time()

    async def one(index: int, customer: Customer) -> None:
        served[index] = await serve(agent, customer, customer_timeout)

    async with trio.open_nursery() as nursery:
        for index, customer in enumerate(people):
            nursery.start_soon(one, index, customer)
    return [s for s in served if s is not None], trio.current_time() - start


# "#", mood, latency and the gaps between the six columns take this much;
# customer, action and reply share the rest and wrap, never narrower than 12.
_FIXED_WIDTH = 2 + 7 + 8 + 5 * 2
_MIN_COLUMN = 12


def table_width() -> int:
    """The terminal's width (``COLUMNS``, or 100 when it is not a terminal), at least 60."""
    return max(60, shutil.get_terminal_size((100, 24)).columns)


def _column_widths(texts: list[list[str]], width: int) -> list[int]:
    """Each column as wide as its longest cell, the widest narrowed first to fit ``width``."""
    widths = [max(len(" ".join(t.split())) for t in column) for column in texts]
    room = width - _FIXED_WIDTH
    while sum(widths) > room and max(widths) > _MIN_COLUMN:
        widths[widths.index(max(widths))] -= 1
    return widths


def print_table(
    title: str, served: list[Served], total: float, out: Any = sys.stdout, width: int = 100
) -> None:
    """The per-customer table of one pass, ``width`` columns wide; long cells wrap."""
    columns = [
        ["customer", *(s.customer.request for s in served)],
        ["action", *(s.action for s in served)],
        ["reply", *(s.reply for s in served)],
    ]
    customer_w, action_w, reply_w = _column_widths(columns, width)
    print(f"\n{title}", file=out)
    header = (
        f"{'#':>2}  {'customer':{customer_w}}  {'mood':7}  {'action':{action_w}}  "
        f"{'reply':{reply_w}}  {'latency':>8}"
    )
    print(header.rstrip(), file=out)
    print("-" * len(header), file=out)
    for i, s in enumerate(served, start=1):
        cells = [
            _wrap(s.customer.request, customer_w),
            _wrap(s.action, action_w),
            _wrap(s.reply, reply_w),
        ]
        for line in range(max(len(c) for c in cells)):
            customer, action, reply = (c[line] if line < len(c) else "" for c in cells)
            first = line == 0
            row = (
                f"{i if first else '':>2}  {customer:{customer_w}}  "
                f"{s.customer.mood.value if first else '':7}  {action:{action_w}}  "
                f"{reply:{reply_w}}  " + (f"{s.latency:>7.2f}s" if first else "")
            )
            print(row.rstrip(), file=out)
    print(f"{'total':>{len(header) - 10}}  {total:>7.2f}s", file=out)


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(" ".join(text.split()), width) or [""]


async def demo_model(
    stack: AsyncExitStack,
    people: list[Customer],
    time_scale: float,
    model: str | None,
    base_url: str | None,
) -> tuple[td.LM, str]:
    """The demo's model, open in ``stack``, and a phrase saying where it runs.

    Without ``model``: a simulated server (also in ``stack``) scripted to
    serve ``people``, its latencies scaled by ``time_scale``.
    """
    if model is None:
        # Streamed answers (demo --stream) come 8 characters at a time.
        config = SimConfig(
            script=script(people, time_scale),
            seed=1,
            stream_chunk_chars=8,
            stream_delay=0.1 * time_scale,
        )
        server = await stack.enter_async_context(serve_sim(config))
        lm = td.LM("openai/sim-model", base_url=server.base_url, api_key="sim-key")
        where = f"the simulated server at {server.base_url} (time scale {time_scale:g})"
    else:
        lm = td.LM(model, base_url=base_url)
        where = f"{model}" + (f" at {base_url}" if base_url else "")
    await stack.enter_async_context(lm)
    return lm, where


async def run_demo(
    *,
    count: int = 4,
    time_scale: float = 0.1,
    model: str | None = None,
    base_url: str | None = None,
    spans: Path | None = None,
    customer_timeout: float | None = None,
    out: Any = sys.stdout,
    width: int | None = None,
) -> dict[str, float]:
    """Run both passes and print the tables, totals and speedup.

    ``spans``: a JSONL file to write every span to (none by default).
    ``width``: of the tables (default: the terminal's, see :func:`table_width`).

    Returns the measured numbers (``sequential``, ``concurrent``, ``speedup``,
    ``slowest``).
    """
    people = customers(count)
    columns = width if width is not None else table_width()
    async with AsyncExitStack() as stack:
        lm, where = await demo_model(stack, people, time_scale, model, base_url)
        exporters = [JsonlExporter(spans)] if spans is not None else []
        collector = await stack.enter_async_context(collect(*exporters))
        print(textwrap.fill(f"Serving {len(people)} customers with {where}", columns), file=out)
        with td.context(lm=lm):
            seq, seq_total = await sequential(people, customer_timeout)
            title = "Sequential: one customer after another"
            print_table(title, seq, seq_total, out, columns)
            conc, conc_total = await concurrent(people, customer_timeout)
            title = "Concurrent: every customer a child task of one nursery"
            print_table(title, conc, conc_total, out, columns)
    slowest = max(s.latency for s in seq)
    speedup = seq_total / conc_total if conc_total else float("inf")
    summary = (
        f"sequential {seq_total:.2f}s, concurrent {conc_total:.2f}s: {speedup:.1f}x faster "
        f"(slowest single customer {slowest:.2f}s; "
        f"concurrent/slowest = {conc_total / slowest:.2f})"
    )
    stats = collector.stats
    if spans is not None:
        written = f"{stats.exported} spans written to {spans} ({stats.dropped} dropped)"
    else:
        written = f"{stats.emitted} spans recorded; --spans PATH writes them as JSONL"
    print(file=out)
    for paragraph in (summary, written):
        print(textwrap.fill(paragraph, columns), file=out)
    return {
        "sequential": seq_total,
        "concurrent": conc_total,
        "speedup": speedup,
        "slowest": slowest,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's command-line options (shared by ``trio-dspy demo`` and the example)."""
    parser.add_argument("--customers", type=int, default=4, help="how many customers")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=0.1,
        help="scale of the story's latencies on the simulated server",
    )
    parser.add_argument(
        "--model", help="a real model, e.g. openai/gpt-4o-mini (key from the environment)"
    )
    parser.add_argument("--base-url", help="the endpoint of an OpenAI-compatible server")
    parser.add_argument(
        "--spans", type=Path, metavar="PATH", help="write every span to this JSONL file"
    )
    parser.add_argument("--timeout", type=float, help="per-customer deadline in seconds")


def run_from_args(
    args: argparse.Namespace, demo: Callable[..., Awaitable[Any]] | None = None
) -> int:
    """Run the demo with parsed arguments; returns the exit status.

    ``demo`` is the pass to run (default :func:`run_demo`; ``trio-dspy demo
    --stream`` gives :func:`~trio_dspy.demo.live.run_stream_demo`).
    """
    if args.customers < 1:
        print("--customers must be at least 1", file=sys.stderr)
        return 2
    options: dict[str, Any] = {
        "count": args.customers,
        "time_scale": args.time_scale,
        "model": args.model,
        "base_url": args.base_url,
        "spans": args.spans,
        "customer_timeout": args.timeout,
    }
    trio.run(functools.partial(demo or run_demo, **options))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python examples/coffee_shop.py [options]``."""
    parser = argparse.ArgumentParser(
        description=plain_text(__doc__).splitlines()[0], formatter_class=HelpFormatter
    )
    add_arguments(parser)
    return exit_quietly_on_broken_pipe(run_from_args, parser.parse_args(argv))
