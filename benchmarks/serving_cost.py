"""The CPU of one served request, for callgrind: N requests on one keep-alive connection.

Run: python benchmarks/serving_cost.py {app,sim} N [--bare]

``app``: td.serving.app (``qa``: one ``Predict("question -> answer")`` on a
DummyLM; ``--bare``: a module that answers at once, so only the app and the
server are left) served in-process by the lean server (``--server h11``).
``sim``: the simulated model server (``trio-dspy serve-sim``) answering the
completion request ``qa`` sends, at no latency. One client sends the N
requests one after another over one connection, with raw bytes.

Instructions per request are the difference of two runs, so start-up and
imports cancel out::

    for n in 50 250; do
        valgrind --tool=callgrind --callgrind-out-file=cg.$n \\
            python benchmarks/serving_cost.py app $n 2>&1 | grep Collected
    done
    # (Ir(250) - Ir(50)) / 200
"""

from __future__ import annotations

import functools
import json
import sys

import trio

import trio_dspy as td
from trio_dspy.serving.h11_server import serve
from trio_dspy.testing.sim_config import SimConfig
from trio_dspy.testing.sim_server import serve_sim


class Bare(td.Module):
    """A program that answers at once."""

    async def forward(self, question: str) -> td.Prediction:
        return td.Prediction(answer="4")


async def exchange(stream: trio.SocketStream, request: bytes) -> bytes:
    """Send ``request`` and read its whole answer (a ``content-length`` body)."""
    await stream.send_all(request)
    data = b""
    while True:
        data += await stream.receive_some(65536)
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            if len(rest) >= length:
                assert b" 200 " in head.split(b"\r\n")[0], data
                return data


def post(path: str, body: bytes, *headers: bytes) -> bytes:
    lines = [b"POST " + path.encode() + b" HTTP/1.1", b"host: 127.0.0.1", *headers]
    lines += [b"content-type: application/json", b"content-length: %d" % len(body)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def app_requests(n: int, bare: bool) -> None:
    program = Bare() if bare else td.Predict("question -> answer")
    app = td.serving.app({"qa": program})
    request = post("/programs/qa", json.dumps({"question": "What is 2 + 2?"}).encode())
    stop = trio.Event()
    with td.context(lm=td.testing.DummyLM([{"answer": "4"}], cycle=True)):
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(
                functools.partial(serve, app, "127.0.0.1", 0, shutdown=stop.wait)
            )
            port = int(urls[0].rstrip("/").rsplit(":", 1)[1])
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                for _ in range(n):
                    await exchange(stream, request)
            stop.set()


async def sim_requests(n: int) -> None:
    async with serve_sim(SimConfig()) as sim:
        # The body qa's model call sends, as td.LM writes it.
        lm = td.LM("openai/sim-model", base_url=sim.base_url, api_key="k")
        async with lm:
            with td.context(lm=lm):
                await td.Predict("question -> answer")(question="What is 2 + 2?")
        body = json.dumps(sim.requests[-1]).encode()
        request = post("/v1/chat/completions", body, b"authorization: Bearer k")
        async with await trio.open_tcp_stream("127.0.0.1", sim.port) as stream:
            for _ in range(n):
                await exchange(stream, request)


def main(argv: list[str]) -> None:
    """Serve ``argv[1]`` requests of the kind ``argv[0]`` names."""
    kind, n = argv[0], int(argv[1])
    if kind == "app":
        trio.run(app_requests, n, "--bare" in argv)
    elif kind == "sim":
        trio.run(sim_requests, n)
    else:
        raise SystemExit(f"usage: serving_cost.py {{app,sim}} N [--bare], not {kind!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
