"""``trio-dspy demo``: the coffee shop, sequential first, then concurrent.

Each customer is served by the same agent in its own request scope (id,
settings overrides, usage, root span) and its own budget (``td.usage_limits``:
``--max-requests`` model calls and ``--max-tokens`` tokens per customer). The
agent is guarded: an input guardrail screens each customer with a quick model
call beside the barista's, and refuses the abusive one, cancelling the
barista's call in flight while the other customers are being served. The
sequential pass awaits the customers one after another; the concurrent pass
starts each as a child task of one nursery. The run's cost is printed with
its timings: 0 against the simulated server, or ``--price`` (a model's list
price, or dollars per million tokens) for what the same tokens would cost.
Against the simulated server (the default) each customer's model latency is
the story's, scaled by ``--time-scale``; with ``--model`` it talks to a real
endpoint instead.
"""

from __future__ import annotations

import argparse
import functools
import math
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

from ..guardrails import Guarded
from ..telemetry import JsonlExporter, collect
from ..testing import SimConfig, SimServer, serve_sim
from ..testing.sim_profiles import SimProfile
from .coffee_shop import CoffeeShopAgent, CustomerMood, abuse_screen
from .pricing import Price, parse_price, run_cost
from .story import ABUSIVE, Customer, customers, script
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
    requests: int = 0
    refused: bool = False  # the guardrail refused this customer


@attrs.frozen
class Budget:
    """Each customer's own ``td.usage_limits``: model calls and tokens."""

    max_requests: int = 8
    max_tokens: int = 20_000


_DEFAULT_BUDGET = Budget()


def customer_overrides(customer: Customer) -> dict[str, Any]:
    # An upset customer gets a more careful (lower temperature) model; the
    # override lives in that customer's scope only.
    if customer.mood is CustomerMood.upset:
        return {"lm_kwargs": {"temperature": 0.2}}
    return {}


def guarded_agent() -> Guarded:
    """The barista behind its input guardrail (see :func:`~.coffee_shop.abuse_screen`)."""
    return td.guarded(CoffeeShopAgent(), input=[abuse_screen()])


async def serve(
    agent: td.Module,
    customer: Customer,
    customer_timeout: float | None,
    budget: Budget | None = None,
) -> Served:
    """Serve one customer inside its own request scope and its own budget.

    A refusal (the guardrail tripped), a spent budget or another trio_dspy
    error becomes the customer's row; nothing is raised for them.
    """
    budget = budget or Budget()
    start = trio.current_time()
    usage = td.Usage()
    refused = False
    try:
        overrides = customer_overrides(customer)
        with td.request_scope("customer", timeout=customer_timeout, **overrides) as req:
            usage = req.usage
            with td.usage_limits(budget.max_requests, budget.max_tokens):
                pred = await agent(request=customer.request, mood=customer.mood)
        action, reply = describe_action(pred.action), pred.reply
    except td.errors.GuardrailTripped as exc:
        action, reply, refused = f"refused by {exc.guardrail}", f"Refused: {exc.info}", True
    except td.errors.UsageLimitExceeded as exc:
        action, reply = "over budget", f"{type(exc).__name__}: {exc}"
    except td.errors.TrioDSPyError as exc:
        action, reply = "error", f"{type(exc).__name__}: {exc}"
    latency = trio.current_time() - start
    return Served(customer, action, reply, latency, usage.total_tokens, usage.requests, refused)


def describe_action(action: Any) -> str:
    name = type(action).__name__
    if name == "MakeDrink":
        o = action.order
        return f"MakeDrink({o.size}{' iced' if o.iced else ''} {o.name}, {action.order_id})"
    if name == "RefundOrder":
        return f"RefundOrder({action.order_id}, ${action.amount:.2f})"
    return name


async def sequential(
    people: list[Customer], customer_timeout: float | None, budget: Budget | None = None
) -> tuple[list[Served], float]:
    """Serve the customers one after another."""
    agent = guarded_agent()
    start = trio.current_time()
    served = [await serve(agent, c, customer_timeout, budget) for c in people]
    return served, trio.current_time() - start


async def concurrent(
    people: list[Customer], customer_timeout: float | None, budget: Budget | None = None
) -> tuple[list[Served], float]:
    """Serve every customer at once, each a child task of one nursery."""
    agent = guarded_agent()
    served: list[Served | None] = [None] * len(people)
    start = trio.current_time()

    async def one(index: int, customer: Customer) -> None:
        served[index] = await serve(agent, customer, customer_timeout, budget)

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
) -> tuple[td.LM, str, SimServer | None]:
    """The demo's model, open in ``stack``, a phrase saying where it runs, and its server.

    Without ``model``: a simulated server (also in ``stack``, and returned)
    scripted to serve ``people``, its latencies scaled by ``time_scale``,
    reporting each call's cost as 0. With ``model`` the server is ``None``.
    """
    server = None
    if model is None:
        # Streamed answers (demo --stream) come 8 characters at a time.
        config = SimConfig(
            script=script(people, time_scale),
            seed=1,
            stream_chunk_chars=8,
            stream_delay=0.1 * time_scale,
            profile=SimProfile("trio-dspy demo", usage_extra={"cost": 0.0}),
        )
        server = await stack.enter_async_context(serve_sim(config))
        lm = td.LM("openai/sim-model", base_url=server.base_url, api_key="sim-key")
        where = f"the simulated server at {server.base_url} (time scale {time_scale:g})"
    else:
        lm = td.LM(model, base_url=base_url)
        where = f"{model}" + (f" at {base_url}" if base_url else "")
    await stack.enter_async_context(lm)
    return lm, where, server


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
    budget: Budget | None = None,
    price: Price | None = None,
) -> dict[str, float]:
    """Run both passes and print the tables, totals, speedup, guardrail, budget and cost.

    ``count`` customers are served, and then the abusive one (:data:`~.story.ABUSIVE`).
    ``spans``: a JSONL file to write every span to (none by default).
    ``width``: of the tables (default: the terminal's, see :func:`table_width`).
    ``budget``: each customer's limits (default :class:`Budget`).
    ``price``: what to charge for the run's tokens (default: what the calls
    cost, 0 on the simulated server; see :mod:`.pricing`).

    Returns the measured numbers (``sequential``, ``concurrent``, ``speedup``,
    ``slowest``, ``cost``: NaN when unknown).
    """
    people = [*customers(count), ABUSIVE]
    budget = budget or Budget()
    columns = width if width is not None else table_width()
    async with AsyncExitStack() as stack:
        lm, where, sim = await demo_model(stack, people, time_scale, model, base_url)
        exporters = [JsonlExporter(spans)] if spans is not None else []
        collector = await stack.enter_async_context(collect(*exporters))
        intro = f"Serving {len(people) - 1} customers and an abusive one with {where}"
        print(textwrap.fill(intro, columns), file=out)
        with td.context(lm=lm), td.track_usage() as usage:
            seq, seq_total = await sequential(people, customer_timeout, budget)
            title = "Sequential: one customer after another"
            print_table(title, seq, seq_total, out, columns)
            conc, conc_total = await concurrent(people, customer_timeout, budget)
            title = "Concurrent: every customer a child task of one nursery"
            print_table(title, conc, conc_total, out, columns)
        abandoned = sim.http.requests_abandoned if sim is not None and sim.http else None
    slowest = max(s.latency for s in seq)
    speedup = seq_total / conc_total if conc_total else float("inf")
    summary = (
        f"sequential {seq_total:.2f}s, concurrent {conc_total:.2f}s: {speedup:.1f}x faster "
        f"(slowest single customer {slowest:.2f}s; "
        f"concurrent/slowest = {conc_total / slowest:.2f})"
    )
    cost, cost_line = _cost_line(usage, price, simulated=sim is not None)
    stats = collector.stats
    if spans is not None:
        written = f"{stats.exported} spans written to {spans} ({stats.dropped} dropped)"
    else:
        written = f"{stats.emitted} spans recorded; --spans PATH writes them as JSONL"
    print(file=out)
    paragraphs = [summary, cost_line, *_guard_lines(conc, len(people), abandoned)]
    paragraphs += [_budget_line(seq + conc, budget), written]
    for paragraph in paragraphs:
        print(textwrap.fill(paragraph, columns), file=out)
    return {
        "sequential": seq_total,
        "concurrent": conc_total,
        "speedup": speedup,
        "slowest": slowest,
        "cost": math.nan if cost is None else cost,
    }


def _cost_line(
    usage: td.Usage, price: Price | None, *, simulated: bool
) -> tuple[float | None, str]:
    """The run's cost and the sentence that reports it."""
    cost, source = run_cost(usage, price)
    if price is None and simulated:
        source = "the simulated server charges nothing; --price prices these tokens"
    figure = "unknown" if cost is None else f"${cost:.6f}"
    calls = (
        f"{usage.requests} model calls, {usage.prompt_tokens:,} prompt and "
        f"{usage.completion_tokens:,} completion tokens"
    )
    return cost, f"cost of the run: {figure} for {calls} ({source})"


def _guard_lines(served: list[Served], count: int, abandoned: int | None) -> list[str]:
    """What the guardrail did in the concurrent pass, in words."""
    lines = [
        f"guardrail: customer {index} refused after {s.latency:.2f}s, the barista cancelled "
        f"mid-call, while the other {count - 1} were served"
        for index, s in enumerate(served, start=1)
        if s.refused
    ]
    if lines and abandoned is not None:
        lines.append(f"the simulated server saw {abandoned} requests abandoned by their client")
    return lines


def _budget_line(served: list[Served], budget: Budget) -> str:
    """Each customer's limits and the most any customer used."""
    over = sum(1 for s in served if s.action == "over budget")
    most_requests = max((s.requests for s in served), default=0)
    most_tokens = max((s.tokens for s in served), default=0)
    line = (
        f"budget per customer (td.usage_limits): {budget.max_requests} model calls, "
        f"{budget.max_tokens:,} tokens; the most one customer used: {most_requests} calls, "
        f"{most_tokens:,} tokens"
    )
    return line + (f"; {over} stopped over budget" if over else "")


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
    parser.add_argument(
        "--max-requests",
        type=int,
        default=_DEFAULT_BUDGET.max_requests,
        help="per-customer budget: model calls (td.usage_limits; not with --stream or --serve)",
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=_DEFAULT_BUDGET.max_tokens,
        help="per-customer budget: prompt and completion tokens (td.usage_limits; not with "
        "--stream or --serve)",
    )
    parser.add_argument(
        "--price",
        type=_price_argument,
        metavar="PRICE",
        help="what the run's tokens would cost: PROVIDER/MODEL at its list price (extra "
        "prices; e.g. openai/gpt-4o-mini) or IN,OUT dollars per million prompt and "
        "completion tokens (e.g. 0.15,0.60); the simulated server charges nothing (not with "
        "--stream or --serve)",
    )


def _price_argument(text: str) -> Price:
    try:
        return parse_price(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_from_args(
    args: argparse.Namespace, demo: Callable[..., Awaitable[Any]] | None = None
) -> int:
    """Run the demo with parsed arguments; returns the exit status.

    ``demo`` is the pass to run (default :func:`run_demo`; ``trio-dspy demo
    --stream`` gives :func:`~trio_dspy.demo.live.run_stream_demo`). The
    budget and ``--price`` belong to :func:`run_demo` alone.
    """
    for name, value in (
        ("--customers", args.customers),
        ("--max-requests", args.max_requests),
        ("--max-tokens", args.max_tokens),
    ):
        if value < 1:
            print(f"{name} must be at least 1", file=sys.stderr)
            return 2
    options: dict[str, Any] = {
        "count": args.customers,
        "time_scale": args.time_scale,
        "model": args.model,
        "base_url": args.base_url,
        "spans": args.spans,
        "customer_timeout": args.timeout,
    }
    if demo is None:
        options["budget"] = Budget(args.max_requests, args.max_tokens)
        options["price"] = args.price
    trio.run(functools.partial(demo or run_demo, **options))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python examples/coffee_shop.py [options]``."""
    parser = argparse.ArgumentParser(
        description=plain_text(__doc__).splitlines()[0], formatter_class=HelpFormatter
    )
    add_arguments(parser)
    return exit_quietly_on_broken_pipe(run_from_args, parser.parse_args(argv))
