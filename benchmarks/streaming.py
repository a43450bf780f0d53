"""Many streamed calls at once: wall time, client CPU per chunk, peak memory.

Run: python benchmarks/streaming.py [--target sim|dummy] [--streams 100,1000]
     [--chunks 50] [--chunk-size 8] [--delay 0.002] [--slow-reader 0.01]
     [--sim-option NAME=VALUE ...]

Each stream is one ``td.streamify(td.Predict("question -> answer"))`` call
whose answer is ``--chunks`` pieces of ``--chunk-size`` characters; every
stream of a run is a child task of one nursery. Targets:

* ``sim`` (default): ``td.LM`` over loopback HTTP (server-sent events) to
  the simulated server, which runs in its own process (this script started
  with ``--serve``) and streams ``--chunk-size`` characters per event,
  ``--delay`` seconds apart; ``--sim-option`` sets other ``SimConfig``
  fields of that server.
* ``dummy``: an in-process ``DummyLM(stream_chunk=..., stream_delay=...)``:
  the cost of streamify, the parsers and the channels without HTTP.

Each configuration runs in a fresh child process (``--one``), so the peak
RSS it reports is its own. Rows: ``--streams`` sizes with a fast reader,
then the smallest size with a reader that sleeps ``--slow-reader`` seconds
per chunk, with ``--chunks`` and with 10x as many: the items waiting for a
reader are bounded by the buffer, so a slow reader slows its model down
instead of piling chunks up.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import resource
import statistics
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from typing import Any

import trio

import trio_dspy as td
from trio_dspy.adapters.markers import COMPLETED, field_header
from trio_dspy.demo.bench import url_process


def answer_text(chunks: int, chunk_size: int) -> str:
    """A chat-format answer whose ``answer`` section is ``chunks * chunk_size`` characters."""
    size = chunks * chunk_size
    body = ("lorem ipsum dolor sit amet " * (size // 27 + 1))[: size - 1] + "."
    return f"{field_header('answer')}\n{body}\n\n{COMPLETED}"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ the server
async def serve(options: dict[str, Any]) -> None:
    """The server process: print the base URL, then serve until terminated."""
    from trio_dspy.testing import SimConfig, SimReply, serve_sim

    chunk_size = options.pop("chunk_size")

    @functools.cache
    def text(chunks: int) -> str:
        return answer_text(chunks, chunk_size)

    def script(body: Any) -> SimReply:
        # The question says how long the answer should be ("... chunks=50").
        match = re.search(r"chunks=(\d+)", json.dumps(body))
        return SimReply(text=text(int(match.group(1)) if match else 50))

    async with serve_sim(SimConfig(script=script, **options)) as sim:
        print(sim.base_url, flush=True)
        await trio.sleep_forever()


# ------------------------------------------------------------------- one run
async def one_run(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``args.streams`` streams at once; return the measurements."""
    text = answer_text(args.chunks, args.chunk_size)
    lm: td.BaseLM
    if args.target == "dummy":
        from trio_dspy.testing import DummyLM

        lm = DummyLM(lambda request: text, stream_chunk=args.chunk_size, stream_delay=args.delay)
    else:
        lm = td.LM(
            "openai/sim-model",
            base_url=args.base_url,
            api_key="sim-key",
            max_concurrency=args.streams,
            read_timeout=600,
        )
    program = td.streamify(td.Predict("question -> answer"), buffer=args.buffer)
    counts: list[int] = []
    first_chunk: list[float] = []

    async def one(index: int) -> None:
        n, started = 0, time.perf_counter()
        async with program(question=f"question {index} chunks={args.chunks}") as stream:
            async for item in stream:
                if isinstance(item, td.StreamResponse):
                    if n == 0:
                        first_chunk.append(time.perf_counter() - started)
                    n += 1
                    if args.reader_delay:
                        await trio.sleep(args.reader_delay)
        counts.append(n)

    rss_before = _peak_rss_mb()
    async with AsyncExitStack() as stack:
        if isinstance(lm, td.LM):
            await stack.enter_async_context(lm)
        with td.context(lm=lm):
            cpu0, t0 = time.process_time(), time.perf_counter()
            async with trio.open_nursery() as nursery:
                for index in range(args.streams):
                    nursery.start_soon(one, index)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    total = sum(counts)
    return {
        "target": args.target,
        "streams": args.streams,
        "chunks_per_stream": statistics.mean(counts),
        "reader_delay": args.reader_delay,
        "wall_s": wall,
        "first_chunk_p50_ms": statistics.median(first_chunk) * 1000 if first_chunk else None,
        "cpu_per_chunk_us": cpu / total * 1e6 if total else None,
        "rss_before_mb": rss_before,
        "peak_rss_mb": _peak_rss_mb(),
    }


# ------------------------------------------------------------------- the rows
def child(args: argparse.Namespace, streams: int, chunks: int, reader_delay: float) -> Any:
    cmd = [sys.executable, __file__, "--one", "--target", args.target]
    cmd += ["--streams", str(streams), "--chunks", str(chunks)]
    cmd += ["--chunk-size", str(args.chunk_size), "--delay", str(args.delay)]
    cmd += ["--reader-delay", str(reader_delay), "--buffer", str(args.buffer)]
    if args.base_url:
        cmd += ["--base-url", args.base_url]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'streams':>8} {'chunks/stream':>13} {'reader':>8} {'wall s':>8} "
        f"{'1st chunk p50 ms':>16} {'CPU us/chunk':>12} {'peak RSS MB':>11}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        reader = f"{r['reader_delay'] * 1000:g}ms" if r["reader_delay"] else "fast"
        first = r["first_chunk_p50_ms"]
        cpu = r["cpu_per_chunk_us"]
        lines.append(
            f"{r['streams']:>8} {r['chunks_per_stream']:>13.1f} {reader:>8} {r['wall_s']:>8.2f} "
            f"{first if first is not None else float('nan'):>16.1f} "
            f"{cpu if cpu is not None else float('nan'):>12.1f} {r['peak_rss_mb']:>11.1f}"
        )
    return "\n".join(lines)


async def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    sizes = [int(s) for s in args.streams_list.split(",")]
    plan = [(n, args.chunks, 0.0) for n in sizes]
    plan.append((min(sizes), args.chunks, args.slow_reader))
    plan.append((min(sizes), args.chunks * 10, args.slow_reader))
    if args.target == "sim":
        options: dict[str, Any] = {
            "stream_chunk_chars": args.chunk_size,
            "stream_delay": args.delay,
        }
        for option in args.sim_option:
            name, _, value = option.partition("=")
            options[name] = json.loads(value)
        cmd = [sys.executable, __file__, "--serve", "--options", json.dumps(options)]
        cmd += ["--chunk-size", str(args.chunk_size)]
        async with url_process(cmd) as base_url:
            args.base_url = base_url
            rows = [await trio.to_thread.run_sync(child, args, *row) for row in plan]
    else:
        rows = [await trio.to_thread.run_sync(child, args, *row) for row in plan]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=["sim", "dummy"], default="sim")
    parser.add_argument("--streams", dest="streams_list", default="100,1000")
    parser.add_argument("--chunks", type=int, default=50, help="chunks per answer")
    parser.add_argument("--chunk-size", type=int, default=8, help="characters per chunk")
    parser.add_argument("--delay", type=float, default=0.002, help="seconds between chunks")
    parser.add_argument("--slow-reader", type=float, default=0.01, help="reader's s/chunk")
    parser.add_argument("--buffer", type=int, default=16, help="streamify buffer")
    parser.add_argument("--sim-option", action="append", default=[], metavar="NAME=JSON")
    # Internal: one measured run, or the server process.
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--reader-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        options = json.loads(args.options)
        options["chunk_size"] = args.chunk_size
        trio.run(serve, options)
        return 0
    if args.one:
        args.streams = int(args.streams_list)
        print(json.dumps(trio.run(one_run, args)))
        return 0
    rows = trio.run(run_all, args)
    print(f"target: {args.target}; chunk size {args.chunk_size}; buffer {args.buffer}")
    print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
