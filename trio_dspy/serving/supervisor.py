"""``trio-dspy serve --workers N``: N worker processes serving one listening socket.

The parent binds and listens, then starts N workers
(:mod:`trio_dspy.serving.worker`) that inherit that one socket and each
serve it on their own trio run. The kernel hands every new connection to
whichever worker accepts first, from one accept queue: ``--port 0`` needs no
agreement between processes, a worker that dies strands no connection queued
for it (as a socket of its own under ``SO_REUSEPORT`` would), and no other
process can join the port as ``SO_REUSEPORT`` would let one of the same user.

The first line printed is the URL, once every worker accepts connections.
Ctrl-C or SIGTERM stops every worker gracefully (running requests get
``--graceful-timeout`` seconds) and the parent exits 0. A worker that exits
on its own is reported and the whole server stops, exit code 1: the parent is
no supervisor with a backoff and a crash-loop limit, the service manager
(systemd, Kubernetes, ...) is, and a server running short of workers without
saying so is worse than one that stops. Workers watch a pipe the parent holds
open, so killing the parent, even with SIGKILL, stops them too.

Each worker is a separate process: ``max_concurrency`` is per worker (N
times it may run at once in all), and in-memory caches and model limits are
per worker too; share them with ``td.RedisLimits`` and ``td.RedisCache``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
from typing import Any

import trio

from . import run
from .sockets import listen, url

__all__ = ["listen", "run_from_args"]

#: Seconds past the grace a worker gets to exit before it is killed.
KILL_MARGIN = 5.0


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``trio-dspy serve``: in this process, or with ``--workers N`` in N workers.

    Returns the exit code: 0 after a clean stop, 1 when the target cannot be
    served, the address cannot be bound or a worker exited on its own.
    """
    if args.workers == 1:
        return run.run_from_args(args)
    if os.name != "posix":
        print("trio-dspy serve: --workers needs a POSIX system", file=sys.stderr)
        return 1
    # The target's mistakes are said once, here, before anything listens.
    if run.prepare(args) is None:
        return 1
    try:
        sock = listen(args.host, args.port, args.backlog)
    except OSError as exc:
        print(f"trio-dspy serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    with sock:
        code: int = trio.run(_supervise, sock, args)
    return code


def _settings(args: argparse.Namespace) -> str:
    """``serve``'s options as JSON for the workers (names of key variables, never keys)."""
    plain = (str, int, float, bool, type(None))
    return json.dumps({k: v for k, v in vars(args).items() if isinstance(v, plain)})


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


async def _supervise(sock: socket.socket, args: argparse.Namespace) -> int:
    """Start the workers, print the URL once all are ready, stop them all; the exit code."""
    parent_r, parent_w = os.pipe()
    ready_r, ready_w = os.pipe()
    procs: list[trio.Process] = []
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
            stop = trio.Event()
            died: list[str] = []
            fds = (sock.fileno(), parent_r, ready_w)
            command = [sys.executable, "-m", "trio_dspy.serving.worker", *map(str, fds)]
            for _ in range(args.workers):
                proc = await trio.lowlevel.open_process([*command, _settings(args)], pass_fds=fds)
                procs.append(proc)
            # Only the workers hold these now: the ready pipe ends when every
            # worker has written or died, the parent pipe when the parent dies.
            os.close(parent_r)
            os.close(ready_w)
            # The listening socket too: while any process holds it the kernel
            # keeps queueing connections, so a copy kept here would make a
            # stopping server queue new clients no worker will ever accept
            # instead of refusing them at once.
            address = url(sock)
            sock.close()
            exited = [trio.Event() for _ in procs]

            async def on_signal() -> None:
                async for _ in received:
                    stop.set()
                    return

            async def watch(index: int, proc: trio.Process) -> None:
                code = await proc.wait()
                exited[index].set()
                if not stop.is_set():
                    died.append(f"worker {index + 1} (pid {proc.pid}) {_how(code)}")
                    stop.set()

            async def announce() -> None:
                count = 0
                async with trio.lowlevel.FdStream(ready_r) as ready:
                    while count < len(procs):
                        chunk = await ready.receive_some()
                        if not chunk:
                            return  # a worker died before it was ready: watch says which
                        count += len(chunk)
                if not stop.is_set():
                    print(address, flush=True)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(on_signal)
                nursery.start_soon(announce)
                for index, proc in enumerate(procs):
                    nursery.start_soon(watch, index, proc)
                await stop.wait()
                if died:
                    print(f"trio-dspy serve: {died[0]}; stopping the server", file=sys.stderr)
                late = await _stop_workers(procs, exited, args.graceful_timeout + KILL_MARGIN)
                nursery.cancel_scope.cancel()
            if late:
                print(
                    f"trio-dspy serve: killed {late}, still running past the grace", file=sys.stderr
                )
            return 1 if died or late else 0
    finally:
        os.close(parent_w)  # any worker left sees its parent gone
        for proc in procs:
            if proc.returncode is None:
                proc.kill()


async def _stop_workers(procs: list[trio.Process], exited: list[trio.Event], wait: float) -> str:
    """SIGTERM every worker still running, kill those still there after ``wait`` seconds;
    which were killed (empty: none)."""
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    with trio.move_on_after(wait):
        for event in exited:
            await event.wait()
    killed: list[Any] = []
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            killed.append(proc.pid)
    if killed:
        with trio.move_on_after(KILL_MARGIN):
            for event in exited:
                await event.wait()
    return ", ".join(f"pid {pid}" for pid in killed)
