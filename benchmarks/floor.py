"""The client's cost against the floor: trio_dspy beside a bare h11-over-trio client.

Run: python benchmarks/floor.py [--calls 400] [--rounds 5] [--burst 1000]
     [--latency 0.5] [--streams 100] [--chunks 50] [--dspy-python PYTHON]
     python benchmarks/floor.py --profile 2000   # cProfile of td.Predict calls

Both clients run in this one process, one after the other, round after
round (so a change of load on the machine falls on both), against the
simulated server in other processes. The floor is a client that does only
what a ``Predict`` call must:

* **bare client**: h11 over one trio TCP stream per request in flight,
  connections reused from a stack; per call it writes the user message,
  ``json.dumps`` the body (the system message rendered once), sends the
  POST, reads the response whole, ``json.loads`` it and cuts the
  ``answer`` section out of the completion;
* **bare SSE reader**: the same POST with ``"stream": true``, then h11
  data split into lines and one ``json.loads`` per ``data:`` event.

Figures, each the median over ``--rounds`` rounds:

* client CPU per sequential call (server latency 0): ``td.Predict`` over
  ``td.LM`` against the bare client;
* wall time of ``--burst`` concurrent calls at ``--latency`` s, each
  measured burst right after an unmeasured one that opens the connections
  (as a running service has them);
* client CPU per streamed chunk: ``--streams`` concurrent ``lm.stream``
  calls of ``--chunks`` chunks each against as many bare SSE readers;
* ``import trio_dspy`` against importing the third-party modules it loads,
  each in fresh interpreters, alternately.

``--dspy-python`` runs ``benchmarks/floor_dspy.py`` (DSPy's ``Predict.acall``
under asyncio) in that interpreter against the same servers, for a DSPy row.
The last lines are the ratios against the targets (1.5x, +0.1 s, 2x, 15 ms).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

# The servers always run this script's tree; the client runs it too, or the
# tree given with ``--tree DIR`` (an older commit, to compare with).
HERE = Path(__file__).resolve().parent
_tree = sys.argv[sys.argv.index("--tree") + 1] if "--tree" in sys.argv else str(HERE.parent)
sys.path.insert(0, _tree)

import h11  # noqa: E402
import trio  # noqa: E402

import trio_dspy as td  # noqa: E402

try:
    from trio_dspy.messages import LMRequest, Message
except ImportError:  # trees older than the messages module
    from trio_dspy.lm import LMRequest, Message  # type: ignore[no-redef]


@asynccontextmanager
async def url_process(cmd: list[str]) -> AsyncIterator[str]:
    """Run ``cmd`` (a server printing its base URL first, of this tree); yield the URL.

    Like ``trio_dspy.demo.bench.url_process``, but here: the trees ``--tree``
    compares with may not have it, and the server must run this tree.
    """
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        line = b""
        with trio.fail_after(60):
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(1)
                if not chunk:
                    raise RuntimeError("the server exited before printing its URL")
                line += chunk
        yield line.decode().strip()
    finally:
        proc.terminate()
        with trio.move_on_after(5):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()


QUESTION = "What is {i} + {i}?"
STREAM_WORDS = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do "


# ------------------------------------------------------------------ the server
def stream_answer(chunks: int, chunk_chars: int) -> str:
    """A chat-format answer whose text streams as about ``chunks`` events."""
    size = max(1, chunks * chunk_chars - 40)  # the markers take the rest
    body = (STREAM_WORDS * (size // len(STREAM_WORDS) + 1))[:size]
    return f"[[ ## answer ## ]]\n{body}\n\n[[ ## completed ## ]]"


async def serve(options: dict[str, Any]) -> None:
    """The server process: print the base URL, then serve until terminated."""
    from trio_dspy.testing import SimConfig, SimReply, serve_sim

    text = options.pop("text", None)

    def script(body: Any) -> SimReply | None:
        return SimReply(text=text) if text is not None else None

    async with serve_sim(SimConfig(script=script, **options)) as sim:
        print(sim.base_url, flush=True)
        await trio.sleep_forever()


def server_cmd(**options: Any) -> list[str]:
    return [sys.executable, __file__, "--serve", json.dumps(options)]


# ------------------------------------------------------------- the bare client
SYSTEM = (
    "Your input fields are:\n1. `question` (str)\nYour output fields are:\n1. `answer` (str)\n\n"
    "All interactions will be structured in the following way, with the appropriate values "
    "filled in.\n\n[[ ## question ## ]]\n{question}\n\n[[ ## answer ## ]]\n{answer}\n\n"
    "[[ ## completed ## ]]\n\nIn adhering to this structure, your objective is: \n"
    "        Given the fields `question`, produce the fields `answer`."
)
USER = (
    "[[ ## question ## ]]\n{question}\n\nRespond with the corresponding output fields, "
    "starting with the field `[[ ## answer ## ]]`, and then ending with the marker for "
    "`[[ ## completed ## ]]`."
)


class _Conn:
    __slots__ = ("h11", "stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)


class BareClient:
    """h11 on trio: POST a chat completion, read it whole or as server-sent events."""

    def __init__(self, base_url: str) -> None:
        rest = base_url.split("://", 1)[1]
        hostport, _, prefix = rest.partition("/")
        host, _, port = hostport.partition(":")
        self.host, self.port = host, int(port)
        self.target = f"/{prefix}/chat/completions".replace("//", "/").encode()
        self.headers = [
            (b"host", hostport.encode()),
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer bench-key"),
        ]
        self.idle: list[_Conn] = []

    async def _exchange(self, body: dict[str, Any]) -> tuple[_Conn, h11.Response]:
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        conn = (
            self.idle.pop()
            if self.idle
            else _Conn(await trio.open_tcp_stream(self.host, self.port))
        )
        headers = [*self.headers, (b"content-length", str(len(content)).encode())]
        data = conn.h11.send(h11.Request(method=b"POST", target=self.target, headers=headers))
        data += conn.h11.send(h11.Data(data=content)) + conn.h11.send(h11.EndOfMessage())
        await conn.stream.send_all(data)
        while True:
            event = conn.h11.next_event()
            if event is h11.NEED_DATA:
                conn.h11.receive_data(await conn.stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                return conn, event

    def _done(self, conn: _Conn) -> None:
        conn.h11.start_next_cycle()
        self.idle.append(conn)

    def _body(self, question: str) -> dict[str, Any]:
        return {
            "model": "sim-model",
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": USER.format(question=question)},
            ],
        }

    async def predict(self, question: str) -> str:
        """One call: the ``answer`` section of the completion."""
        conn, _ = await self._exchange(self._body(question))
        chunks = []
        while True:
            event = conn.h11.next_event()
            if event is h11.NEED_DATA:
                conn.h11.receive_data(await conn.stream.receive_some(65536))
            elif isinstance(event, h11.Data):
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
        self._done(conn)
        data = json.loads(b"".join(chunks))
        text = data["choices"][0]["message"]["content"]
        start = text.index("[[ ## answer ## ]]") + len("[[ ## answer ## ]]")
        return text[start : text.index("[[ ## completed ## ]]", start)].strip()

    async def stream(self, question: str) -> int:
        """One streamed call: the number of text chunks read."""
        conn, _ = await self._exchange({**self._body(question), "stream": True})
        pending, chunks = b"", 0
        while True:
            event = conn.h11.next_event()
            if event is h11.NEED_DATA:
                conn.h11.receive_data(await conn.stream.receive_some(65536))
            elif isinstance(event, h11.Data):
                *lines, pending = (pending + event.data).split(b"\n")
                for line in lines:
                    if line.startswith(b"data: ") and line != b"data: [DONE]":
                        delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
                        chunks += bool(delta)
            elif isinstance(event, h11.EndOfMessage):
                break
        self._done(conn)
        return chunks

    async def aclose(self) -> None:
        for conn in self.idle:
            await conn.stream.aclose()
        self.idle.clear()


# ------------------------------------------------------------------ the sides
class Sides:
    """The bare client and trio_dspy, each against the same servers."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls
        self.bare = {name: BareClient(url) for name, url in urls.items()}
        self.lms = {name: _lm(url) for name, url in urls.items()}
        # One Predict per server, its model pinned (as td.configure would set it once).
        self.predicts = {name: td.Predict("question -> answer") for name in urls}
        for name, predict in self.predicts.items():
            predict.lm = self.lms[name]

    async def aclose(self) -> None:
        for bare in self.bare.values():
            await bare.aclose()
        for lm in self.lms.values():
            await lm.aclose()

    def call(self, side: str, server: str) -> Callable[[int], Awaitable[Any]]:
        if side == "bare":
            bare = self.bare[server]
            return lambda i: bare.predict(QUESTION.format(i=i))
        lm, predict = self.lms[server], self.predicts[server]
        if side == "lm":  # the LM layer alone: a request already written
            system = Message("system", SYSTEM)

            def lm_call(i: int) -> Any:
                user = Message("user", USER.format(question=QUESTION.format(i=i)))
                return lm.request(LMRequest([system, user]))

            return lm_call

        return lambda i: predict(question=QUESTION.format(i=i))

    def stream(self, side: str) -> Callable[[int], Awaitable[int]]:
        if side == "bare":
            bare = self.bare["stream"]
            return lambda i: bare.stream(QUESTION.format(i=i))
        lm = self.lms["stream"]
        system = Message("system", SYSTEM)

        async def td_stream(i: int) -> int:
            request = LMRequest(
                [system, Message("user", USER.format(question=QUESTION.format(i=i)))]
            )
            chunks = 0
            async with lm.stream(request) as stream:
                async for _ in stream:
                    chunks += 1
            return chunks

        return td_stream


def _lm(url: str) -> Any:
    # The settings a user gets: the default timeouts are part of every call's cost.
    return td.LM("openai/sim-model", base_url=url, api_key="bench-key")


async def sequential_cpu(call: Callable[[int], Awaitable[Any]], n: int) -> float:
    """Client CPU microseconds per call over ``n`` calls one after another."""
    cpu0 = time.process_time()
    for i in range(n):
        await call(i)
    return (time.process_time() - cpu0) / n * 1e6


async def interleaved_cpu(
    calls: dict[str, Callable[[int], Awaitable[Any]]], n: int
) -> dict[str, float]:
    """Client CPU microseconds per call of each of ``calls``, taking turns call by
    call (so that a change of load on the machine falls on all of them alike)."""
    spent = dict.fromkeys(calls, 0.0)
    clock = time.process_time
    for i in range(n):
        for name, call in calls.items():
            cpu0 = clock()
            await call(i)
            spent[name] += clock() - cpu0
    return {name: cpu / n * 1e6 for name, cpu in spent.items()}


async def burst_wall(call: Callable[[int], Awaitable[Any]], n: int) -> float:
    """Seconds for ``n`` calls at once."""
    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(call, i)
    return time.perf_counter() - t0


async def stream_cpu(stream: Callable[[int], Awaitable[int]], n: int) -> tuple[float, int]:
    """Client CPU microseconds per chunk over ``n`` streams at once; the chunks read."""
    counts: list[int] = []

    async def one(i: int) -> None:
        counts.append(await stream(i))

    cpu0 = time.process_time()
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    total = sum(counts)
    return (time.process_time() - cpu0) / max(1, total) * 1e6, total


SIDES = ("bare", "td")


async def measure(
    args: argparse.Namespace, urls: dict[str, str]
) -> dict[str, dict[str, list[float]]]:
    """Every figure, per side, per round."""
    results: dict[str, dict[str, list[float]]] = {s: {} for s in SIDES}
    sides = Sides(urls)
    try:
        for side in SIDES:  # warm up: imports, first connections, the burst's pool
            await sequential_cpu(sides.call(side, "seq"), 20)
            if args.burst:
                await burst_wall(sides.call(side, "burst"), args.burst)
            if args.streams:
                await stream_cpu(sides.stream(side), min(args.streams, 10))
        for _ in range(args.rounds):
            calls = {side: sides.call(side, "seq") for side in (*SIDES, "lm")}
            cpu = await interleaved_cpu(calls, args.calls)
            for side in SIDES:
                results[side].setdefault("cpu_us_per_call", []).append(cpu[side])
            results["td"].setdefault("lm_cpu_us_per_call", []).append(cpu["lm"])
            if args.burst:
                for side in SIDES:
                    # Once to have the connections open (an idle pool keeps them
                    # 5 s), once measured: a busy service's calls find them open.
                    await burst_wall(sides.call(side, "burst"), args.burst)
                    wall = await burst_wall(sides.call(side, "burst"), args.burst)
                    results[side].setdefault("burst_wall_s", []).append(wall)
            if args.streams:
                for side in SIDES:
                    cpu, total = await stream_cpu(sides.stream(side), args.streams)
                    results[side].setdefault("cpu_us_per_chunk", []).append(cpu)
                    results[side].setdefault("chunks", []).append(total)
    finally:
        await sides.aclose()
    return results


# ------------------------------------------------------------------- imports
IMPORT_CHILD = "import time\nt0 = time.perf_counter()\n{imports}\nprint(time.perf_counter() - t0)\n"
# What a program does first: import, then name what it uses (the names load
# their modules on first use).
FIRST_USE = "import trio_dspy as td\ntd.Predict, td.LM, td.configure"
LIST_DEPS = (
    "import sys\nbefore = set(sys.modules)\n{statement}\n"
    "print(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - before}"
    " - {'trio_dspy'} - set(sys.stdlib_module_names) - {'_distutils_hack'})))\n"
)


def import_times(
    runs: int, statement: str = "import trio_dspy"
) -> tuple[list[str], list[float], list[float]]:
    """The third-party packages ``statement`` loads, and seconds to import them
    alone and to run ``statement``, each in ``runs`` fresh interpreters (alternately)."""
    # The children run in the tree measured: ``python -c`` imports from the
    # working directory before PYTHONPATH.
    env = {**os.environ, "PYTHONPATH": _tree}
    deps = subprocess.run(
        [sys.executable, "-c", LIST_DEPS.replace("{statement}", statement)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=_tree,
    ).stdout.split()
    deps = [d for d in deps if not d.startswith("_")]
    alone: list[float] = []
    ours: list[float] = []

    def timed(imports: str) -> float:
        code = IMPORT_CHILD.format(imports=imports)
        out = subprocess.run(
            [sys.executable, "-c", code],
            check=True,
            capture_output=True,
            text=True,
            env=env,
            cwd=_tree,
        )
        return float(out.stdout.strip())

    for _ in range(runs):
        alone.append(timed("\n".join(f"import {d}" for d in deps)))
        ours.append(timed(statement))
    return deps, alone, ours


# -------------------------------------------------------------------- DSPy
def run_dspy(args: argparse.Namespace, urls: dict[str, str]) -> dict[str, Any] | None:
    if not args.dspy_python:
        return None
    cmd = [args.dspy_python, str(HERE / "floor_dspy.py"), "--seq-url", urls["seq"]]
    cmd += ["--burst-url", urls["burst"], "--calls", str(args.calls)]
    cmd += ["--burst", str(args.burst), "--rounds", str(args.rounds)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"the DSPy side failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------ the report
def report(
    args: argparse.Namespace,
    results: dict[str, dict[str, list[float]]],
    imports: tuple[list[str], list[float], list[float]] | None,
    dspy: dict[str, Any] | None,
    first_use: tuple[list[str], list[float], list[float]] | None = None,
) -> str:
    med = {s: {k: statistics.median(v) for k, v in results[s].items()} for s in SIDES}
    lines = [
        f"{'figure':<38} {'bare':>10} {'trio_dspy':>10} {'DSPy':>10} {'ratio':>8} {'target':>9}"
    ]

    def row(label: str, key: str, fmt: str, target: str, *, diff: bool = False) -> None:
        if key not in med["bare"]:
            return
        bare, ours = med["bare"][key], med["td"][key]
        theirs = dspy.get(key) if dspy else None
        # The median of each round's ratio: both sides of a round share its load.
        pairs = list(zip(results["td"][key], results["bare"][key], strict=True))
        if diff:
            ratio = f"{statistics.median(t - b for t, b in pairs):+.2f}s"
        else:
            ratio = f"{statistics.median(t / b for t, b in pairs):.2f}x"
        dspy_text = f"{theirs:{fmt}}" if theirs is not None else "-"
        lines.append(
            f"{label:<38} {bare:>10{fmt}} {ours:>10{fmt}} {dspy_text:>10} {ratio:>8} {target:>9}"
        )

    row("CPU us per sequential call", "cpu_us_per_call", ".0f", "<= 1.5x")
    if "lm_cpu_us_per_call" in med["td"]:
        lm_only = med["td"]["lm_cpu_us_per_call"]
        pairs = zip(results["td"]["lm_cpu_us_per_call"], results["bare"]["cpu_us_per_call"])
        ratio = statistics.median(t / b for t, b in pairs)
        lines.append(
            f"{'  of which lm.request alone':<38} {'':>10} {lm_only:>10.0f} {'':>10} {ratio:>7.2f}x"
        )
    row(
        f"{args.burst} calls at once, {args.latency:g} s: wall s",
        "burst_wall_s",
        ".3f",
        "<= +0.1s",
        diff=True,
    )
    row(f"CPU us per streamed chunk ({args.streams} streams)", "cpu_us_per_chunk", ".1f", "<= 2x")
    if imports is not None:
        deps, alone, ours = imports
        a, o = statistics.median(alone) * 1000, statistics.median(ours) * 1000
        lines.append(
            f"{'import ms (deps alone | trio_dspy)':<38} {a:>10.1f} {o:>10.1f} {'-':>10} "
            f"{o - a:>+7.1f}m {'<= +15ms':>9}"
        )
        lines.append(f"  dependencies imported alone: {', '.join(deps) or '(none)'}")
    if first_use is not None:  # not a target: where the cost of the modules went
        deps, alone, ours = first_use
        a, o = statistics.median(alone) * 1000, statistics.median(ours) * 1000
        lines.append(
            f"{'+ first use of Predict, LM: ms':<38} {a:>10.1f} {o:>10.1f} {'-':>10} "
            f"{o - a:>+7.1f}m {'(info)':>9}"
        )
    lines.append(f"client: trio_dspy from {Path(td.__file__).parent}")
    lines.append(
        f"medians of {args.rounds} rounds; per round {args.calls} sequential calls, "
        f"{args.burst} concurrent calls, {args.streams} streams of ~{args.chunks} chunks"
    )
    if dspy:
        lines.append(f"DSPy {dspy.get('version', '?')} in {args.dspy_python}")
    return "\n".join(lines)


def profile(args: argparse.Namespace, urls: dict[str, str]) -> None:
    """cProfile ``args.profile`` sequential ``td.Predict`` calls; print the top functions."""

    async def run() -> None:
        sides = Sides(urls)
        call = sides.call(args.profile_side, "seq")
        await sequential_cpu(call, 20)
        profiler = cProfile.Profile(time.process_time)  # CPU, not waits for a core
        profiler.enable()
        await sequential_cpu(call, args.profile)
        profiler.disable()
        await sides.aclose()
        if args.profile_out:
            profiler.dump_stats(args.profile_out)
        stats = pstats.Stats(profiler).strip_dirs()
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(60)

    trio.run(run)


async def with_servers(args: argparse.Namespace, body: Callable[[dict[str, str]], Any]) -> Any:
    async with AsyncExitStack() as stack:
        urls = {
            "seq": await stack.enter_async_context(url_process(server_cmd())),
            "burst": await stack.enter_async_context(
                url_process(server_cmd(latency={"kind": "constant", "a": args.latency}))
            ),
            "stream": await stack.enter_async_context(
                url_process(
                    server_cmd(
                        text=stream_answer(args.chunks, args.chunk_chars),
                        stream_chunk_chars=args.chunk_chars,
                        stream_delay=args.delay,
                    )
                )
            ),
        }
        return await body(urls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="sequential calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--burst", type=int, default=1000, help="concurrent calls (0: skip)")
    parser.add_argument("--latency", type=float, default=0.5, help="server latency of the burst")
    parser.add_argument("--streams", type=int, default=100, help="concurrent streams (0: skip)")
    parser.add_argument("--chunks", type=int, default=50, help="chunks per streamed answer")
    parser.add_argument("--chunk-chars", type=int, default=8)
    parser.add_argument("--delay", type=float, default=0.002, help="seconds between events")
    parser.add_argument("--imports", type=int, default=10, help="interpreters per import figure")
    parser.add_argument("--dspy-python", default=None, metavar="PYTHON")
    parser.add_argument("--profile", type=int, default=0, metavar="CALLS")
    parser.add_argument("--profile-side", choices=(*SIDES, "lm"), default="td")
    parser.add_argument("--profile-out", default=None, help="also write the stats to this file")
    parser.add_argument("--tree", default=None, help="run the client from this source tree")
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        options = json.loads(args.serve)
        if "latency" in options:
            from trio_dspy.testing import Latency

            options["latency"] = Latency.constant(options["latency"]["a"])
        trio.run(serve, options)
        return 0
    if args.profile:
        trio.run(functools.partial(with_servers, args, _profile_body(args)))
        return 0

    async def body(urls: dict[str, str]) -> Any:
        results = await measure(args, urls)
        dspy = await trio.to_thread.run_sync(run_dspy, args, urls)
        return results, dspy

    results, dspy = trio.run(with_servers, args, body)
    imports = import_times(args.imports) if args.imports else None
    first_use = import_times(args.imports, FIRST_USE) if args.imports else None
    print(report(args, results, imports, dspy, first_use))
    print(json.dumps({"results": results, "dspy": dspy}))
    return 0


def _profile_body(args: argparse.Namespace) -> Callable[[dict[str, str]], Awaitable[None]]:
    async def body(urls: dict[str, str]) -> None:
        await trio.to_thread.run_sync(profile, args, urls)

    return body


if __name__ == "__main__":
    sys.exit(main())
