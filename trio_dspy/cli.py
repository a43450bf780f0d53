"""The ``trio-dspy`` command.

Each subcommand is an ``add_<name>(subparsers)`` function that declares its
arguments and sets ``run`` to a function ``(args) -> exit code``; adding a
subcommand means writing that pair and listing the ``add_`` function in
:data:`SUBCOMMANDS`.

``trio-dspy demo`` serves the coffee-shop story's customers sequentially and
then concurrently; ``trio-dspy bench`` measures sequential vs nursery over
real HTTP; ``trio-dspy serve-sim`` runs the simulated OpenAI-compatible server until
Ctrl-C and prints its base URL on the first line of standard output;
``trio-dspy serve module:attr`` serves programs over HTTP the same way.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import signal
import sys
from collections.abc import Callable
from typing import Any

import trio

from .demo.terminal import HelpFormatter, exit_quietly_on_broken_pipe, plain_text
from .heap import settle_heap
from .testing.sim_config import Fault, Latency, SimConfig
from .testing.sim_profiles import PROFILES
from .testing.sim_server import SimServer, serve_sim
from .testing.sim_task import InstructionTask

__all__ = [
    "SUBCOMMANDS",
    "HelpFormatter",
    "build_parser",
    "exit_quietly_on_broken_pipe",
    "main",
    "plain_text",
    "run_demo",
    "sim_config_from_args",
]

Subparsers = Any  # argparse's _SubParsersAction is private


def _version() -> str:
    try:
        return importlib.metadata.version("trio_dspy")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        from . import __version__

        return __version__


# ---------------------------------------------------------------- serve-sim
def add_serve_sim(subparsers: Subparsers) -> None:
    """Declare ``serve-sim``: run the simulated server until Ctrl-C."""
    p = subparsers.add_parser(
        "serve-sim",
        help="run the simulated OpenAI-compatible server",
        description="Serve /v1/chat/completions, /v1/messages, /v1/embeddings and /v1/models "
        "on loopback until Ctrl-C. The first line printed is the base URL to give an OpenAI "
        "client.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument("--port", type=int, default=0, help="port to bind (0: a free one)")
    p.add_argument(
        "--latency",
        type=_latency,
        default="0",
        help="SECONDS, uniform:LO,HI or lognormal:MEDIAN,SIGMA",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of all randomness")
    p.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="KIND[:OPTS]",
        help="inject a fault, e.g. rate_limit:every=2,retry_after=0.5 or reset:probability=0.1; "
        "kinds: rate_limit, server_error, unavailable, reset, stall, malformed, truncate, "
        "context_length (repeatable; the first matching rule wins)",
    )
    p.add_argument("--api-key", default=None, help="require this key (Bearer or x-api-key)")
    p.add_argument("--no-json-schema", action="store_true", help="refuse json_schema")
    p.add_argument("--no-json-object", action="store_true", help="refuse json_object")
    p.add_argument("--no-tools", action="store_true", help="refuse tools")
    p.add_argument("--context-window", type=int, default=None, help="max prompt tokens")
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=None,
        help="imitate that server's refusals, error bodies and usage",
    )
    p.add_argument(
        "--stream-chunk-chars", type=int, default=16, help="characters per streamed piece"
    )
    p.add_argument(
        "--stream-delay", type=float, default=0.0, help="seconds between streamed events"
    )
    p.add_argument(
        "--embedding-dimensions",
        type=int,
        default=64,
        help="length of the vectors /v1/embeddings serves (unless a request asks otherwise)",
    )
    p.add_argument(
        "--task",
        type=_task,
        default=None,
        metavar="instructions[:SEED]",
        help="play td.testing.InstructionTask (seeded): accuracy grows with the phrases the "
        "instructions hold, and reflection and proposal prompts are answered, so optimizers "
        "that rewrite instructions really improve",
    )
    p.set_defaults(run=run_serve_sim)


def _latency(text: str) -> Latency:
    try:
        return Latency.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _task(text: str) -> InstructionTask:
    name, _, seed = text.partition(":")
    if name != "instructions":
        raise argparse.ArgumentTypeError(f"unknown task {name!r}: use instructions[:SEED]")
    try:
        return InstructionTask(seed=int(seed or 0))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"the task's seed must be a whole number: {seed!r}"
        ) from None


def _fault(text: str) -> Fault:
    try:
        return Fault.parse(text)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def sim_config_from_args(args: argparse.Namespace) -> SimConfig:
    """The :class:`SimConfig` that parsed ``serve-sim`` arguments describe."""
    return SimConfig(
        latency=args.latency,
        seed=args.seed,
        faults=args.fault,
        api_key=args.api_key,
        supports_json_schema=not args.no_json_schema,
        supports_json_object=not args.no_json_object,
        supports_tools=not args.no_tools,
        context_window=args.context_window,
        profile=args.profile,
        stream_chunk_chars=args.stream_chunk_chars,
        stream_delay=args.stream_delay,
        embedding_dimensions=args.embedding_dimensions,
        script=args.task.script() if args.task is not None else None,
    )


async def serve_until_cancelled(
    config: SimConfig,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[SimServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a simulated server until cancelled; ``nursery.start`` returns it once listening.

    Raises:
        OSError: the address cannot be bound.
    """
    async with serve_sim(config, host=host, port=port) as sim:
        task_status.started(sim)
        await trio.sleep_forever()


def run_serve_sim(args: argparse.Namespace) -> int:
    """Run ``serve-sim`` until Ctrl-C or SIGTERM; print the base URL, then the counters."""
    config = sim_config_from_args(args)
    holder: list[SimServer] = []

    async def serve() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                sim = await nursery.start(serve_until_cancelled, config, args.host, args.port)
                holder.append(sim)
                settle_heap()
                print(sim.base_url, flush=True)
                async for _ in signals:  # Ctrl-C or SIGTERM: stop cleanly
                    nursery.cancel_scope.cancel()
                    break

    failed: list[BaseException] = []
    try:
        trio.run(serve)
    except* OSError as group:
        # The bind fails inside the server's nursery, so it arrives grouped.
        failed.extend(group.exceptions)
    if failed:
        where = f"{args.host}:{args.port}"
        print(f"trio-dspy serve-sim: cannot listen on {where}: {failed[0]}", file=sys.stderr)
        return 1
    if holder:
        print(f"served: {holder[0].stats}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- the command
# ------------------------------------------------------------------ demo / bench
def add_demo(subparsers: Subparsers) -> None:
    """Declare ``demo``: the coffee shop, sequential then concurrent."""
    from .demo import runner

    p = subparsers.add_parser(
        "demo",
        help="serve the coffee-shop customers sequentially, then concurrently",
        description=plain_text(runner.__doc__),
        formatter_class=HelpFormatter,
    )
    runner.add_arguments(p)
    p.add_argument(
        "--stream",
        action="store_true",
        help="serve everyone at once through td.streamify, printing each tool status and "
        "reply as it arrives",
    )
    p.add_argument(
        "--serve",
        action="store_true",
        help="serve the agent over HTTP with its playground (extra serve), send it the "
        "customers at once, then keep serving until Ctrl-C",
    )
    p.add_argument("--port", type=int, default=8000, help="with --serve: the port (0: a free one)")
    p.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Run ``demo``: both passes, with ``--stream`` the streamed one, with ``--serve`` over HTTP."""
    import functools

    from .demo import live, runner, served

    if args.serve:
        return runner.run_from_args(args, functools.partial(served.run_serve_demo, port=args.port))
    return runner.run_from_args(args, live.run_stream_demo if args.stream else None)


def add_bench(subparsers: Subparsers) -> None:
    """Declare ``bench``: sequential vs nursery vs nursery-with-limit over HTTP."""
    from .demo import bench

    p = subparsers.add_parser(
        "bench",
        help="measure sequential vs nursery vs nursery-with-limit over real HTTP",
        description=plain_text(bench.__doc__),
        formatter_class=HelpFormatter,
    )
    bench.add_arguments(p)
    p.set_defaults(run=bench.run_from_args)


def add_serve(subparsers: Subparsers) -> None:
    """Declare ``serve``: programs over HTTP on hypercorn's trio worker or the lean h11 server."""
    from .serving import run, supervisor

    p = subparsers.add_parser(
        "serve",
        help="serve programs over HTTP (td.serving.app on hypercorn's trio worker, "
        "or --server h11)",
        description=plain_text(run.__doc__),
        formatter_class=HelpFormatter,
    )
    run.add_arguments(p)
    p.set_defaults(run=supervisor.run_from_args)


SUBCOMMANDS: list[Callable[[Subparsers], None]] = [add_demo, add_bench, add_serve_sim, add_serve]


def build_parser() -> argparse.ArgumentParser:
    """The ``trio-dspy`` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="trio-dspy",
        description="trio_dspy: the coffee-shop demo, the benchmark, a simulated LLM server, "
        "serving programs over HTTP.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``trio-dspy`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit code: 0 on success, 1 when the command failed, 2 for
    bad usage (argparse exits with 2 itself on invalid arguments).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] | None = getattr(args, "run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return 2
    return exit_quietly_on_broken_pipe(run, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
