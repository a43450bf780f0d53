"""``trio-dspy serve --workers N``: worker processes sharing one socket, over real sockets,
on both servers (``--server hypercorn`` and ``h11``).

Each test starts the real command (a parent and its workers) serving
tests/serve_workers_target.py, whose ``pid`` program answers with the id of
the process that ran it. Real clock, every wait bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from trio_dspy.cli import build_parser
from trio_dspy.serving.run import SERVERS

pytest.importorskip("hypercorn")
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

SERVE = [sys.executable, "-m", "trio_dspy.cli", "serve", "tests.serve_workers_target:programs"]


class Server:
    """A running ``trio-dspy serve``: its process, URL and the stderr read after it exits."""

    def __init__(self, proc: trio.Process, url: str) -> None:
        self.proc = proc
        self.url = url

    def workers(self) -> set[int]:
        """The ids of the parent's child processes still alive (``/proc``)."""
        return {pid for pid in _alive() if _parent_of(pid) == self.proc.pid}

    async def ask(self, client: httpx.AsyncClient, seconds: float = 0.0) -> httpx.Response:
        return await client.post(f"{self.url}/programs/pid", json={"seconds": seconds})

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        chunks = []
        while chunk := await self.proc.stderr.receive_some():
            chunks.append(chunk)
        return b"".join(chunks).decode()


def _alive() -> set[int]:
    return {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}


def _stat(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return []


def _parent_of(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if fields and fields[0] != "Z" else None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _running(pid: int) -> bool:
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z"


@pytest.fixture(params=SERVERS)
def kind(request: pytest.FixtureRequest) -> str:
    """Each server ``trio-dspy serve --server`` offers, in turn."""
    name: str = request.param
    return name


@asynccontextmanager
async def serve(server: str, *flags: str) -> AsyncIterator[Server]:
    """``trio-dspy serve ... --port 0 --server SERVER FLAGS`` once it has printed its URL;
    killed at the end."""
    proc = await trio.lowlevel.open_process(
        [*SERVE, "--port", "0", "--server", server, *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = b""
        with trio.fail_after(30):
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive_some(1)
                assert chunk, "the server exited before printing its URL"
                line += chunk
        yield Server(proc, line.decode().strip())
    finally:
        for pid in {pid for pid in _alive() if _parent_of(pid) == proc.pid}:
            os.kill(pid, signal.SIGKILL)
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def _sigterm_while_running(
    server: Server,
    client: httpx.AsyncClient,
    seconds: float,
    answers: list[httpx.Response],
    nursery: trio.Nursery,
) -> None:
    """Start a request that runs ``seconds`` in a worker (its answer goes to
    ``answers``), then send the parent SIGTERM while it runs."""

    async def running() -> None:
        answers.append(await server.ask(client, seconds))

    nursery.start_soon(running)
    await trio.sleep(0.3)  # the request is running in a worker
    server.proc.send_signal(signal.SIGTERM)


async def _pids_answering(server: Server, want: int, clients: AsyncExitStack) -> set[int]:
    """The worker ids seen answering concurrent requests, until ``want`` of them have.

    Each round opens a new client, whose connections stay open until
    ``clients`` closes: a worker accepts as many waiting connections as it
    can at once, so one round's may all go to one worker.
    """
    seen: set[int] = set()
    while len(seen) < want:
        client = await clients.enter_async_context(httpx.AsyncClient(timeout=10))

        async def one(client: httpx.AsyncClient = client) -> None:
            reply = await server.ask(client, 0.2)
            assert reply.status_code == 200, reply.text
            seen.add(reply.json()["outputs"]["pid"])

        async with trio.open_nursery() as nursery:
            for _ in range(16):
                nursery.start_soon(one)
    return seen


@pytest.mark.slow
async def test_two_workers_answer_on_one_port_and_sigterm_lets_running_requests_finish(
    kind: str,
) -> None:
    with trio.fail_after(40):
        async with serve(kind, "--workers", "2", "--graceful-timeout", "5") as server:
            assert server.url.startswith("http://127.0.0.1:") and not server.url.endswith(":0")
            workers = server.workers()
            assert len(workers) == 2
            async with AsyncExitStack() as clients:
                assert await _pids_answering(server, 2, clients) == workers

            answers: list[httpx.Response] = []
            async with httpx.AsyncClient(timeout=10) as client, trio.open_nursery() as nursery:
                await _sigterm_while_running(server, client, 1.0, answers, nursery)
                start = trio.current_time()
                code = await server.proc.wait()
            assert code == 0, await server.stderr()
            assert trio.current_time() - start < 5  # within the grace
            assert answers[0].status_code == 200
            assert not any(_running(pid) for pid in workers)


@pytest.mark.slow
async def test_ctrl_c_stops_every_worker_and_the_parent_exits_0(kind: str) -> None:
    with trio.fail_after(40):
        async with serve(kind, "--workers", "2") as server:
            workers = server.workers()
            server.proc.send_signal(signal.SIGINT)
            assert await server.proc.wait() == 0, await server.stderr()
            assert not any(_running(pid) for pid in workers)


@pytest.mark.slow
async def test_a_worker_that_dies_stops_the_server_with_exit_code_1_and_says_which(
    kind: str,
) -> None:
    with trio.fail_after(40):
        async with serve(kind, "--workers", "2", "--graceful-timeout", "5") as server:
            victim, other = sorted(server.workers())
            os.kill(victim, signal.SIGKILL)
            code = await server.proc.wait()
            err = await server.stderr()
    assert code == 1
    assert f"pid {victim}" in err and "SIGKILL" in err and "stopping the server" in err
    assert not _running(other)


@pytest.mark.slow
async def test_workers_that_fail_at_start_stop_the_server_with_exit_code_1_before_any_url(
    kind: str,
) -> None:
    target = "tests.serve_failing_worker_target:programs"
    command = [*SERVE[:-1], target, "--port", "0", "--server", kind, "--workers", "2"]
    with trio.fail_after(40):
        done = await trio.run_process(
            command, capture_stdout=True, capture_stderr=True, check=False
        )
    err = done.stderr.decode()
    assert done.returncode == 1
    assert done.stdout == b""  # no URL: the server never served
    assert "weights are not mounted" in err  # the worker's own reason
    assert "exited with code 1; stopping the server" in err
    assert not [pid for pid in _alive() if _running(pid) and target in _cmdline(pid)]


@pytest.mark.slow
async def test_workers_stop_when_their_parent_is_killed_with_sigkill(kind: str) -> None:
    with trio.fail_after(40):
        async with serve(kind, "--workers", "2") as server:
            workers = server.workers()
            assert len(workers) == 2
            server.proc.kill()
            await server.proc.wait()
            while any(_running(pid) for pid in workers):  # noqa: ASYNC110 - other processes
                await trio.sleep(0.05)


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_workers_must_be_a_whole_number_of_at_least_one(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "m:a", "--workers", value])
    assert exited.value.code == 2
    assert "--workers" in capsys.readouterr().err


def test_one_worker_is_the_default() -> None:
    assert build_parser().parse_args(["serve", "m:a"]).workers == 1


@pytest.mark.slow
async def test_idle_keep_alive_connections_to_workers_do_not_hold_the_stop_for_the_whole_grace(
    kind: str,
) -> None:
    with trio.fail_after(40):
        async with (
            serve(kind, "--workers", "2", "--graceful-timeout", "20") as server,
            AsyncExitStack() as clients,
        ):
            # Both workers answer, and the clients keep their connections open.
            assert len(await _pids_answering(server, 2, clients)) == 2
            server.proc.send_signal(signal.SIGTERM)
            start = trio.current_time()
            assert await server.proc.wait() == 0, await server.stderr()
            assert trio.current_time() - start < 5  # not the 20 s grace


@pytest.mark.slow
async def test_a_stopping_server_refuses_new_connections_while_running_requests_finish(
    kind: str,
) -> None:
    with trio.fail_after(40):
        async with serve(kind, "--workers", "2", "--graceful-timeout", "5") as server:
            answers: list[httpx.Response] = []
            async with httpx.AsyncClient(timeout=10) as client, trio.open_nursery() as nursery:
                await _sigterm_while_running(server, client, 3.0, answers, nursery)
                # Refused, so a client or balancer can go elsewhere, rather
                # than queued where no one will ever accept it: asked until the
                # workers have stopped listening, while the request still runs.
                refused = False
                async with httpx.AsyncClient(timeout=0.3) as late:
                    with trio.move_on_after(2):
                        while not refused:
                            try:
                                await server.ask(late)
                            except httpx.ConnectError:
                                refused = True
                            except httpx.TimeoutException:
                                pass  # accepted by the kernel, served by no one
                assert refused
            assert [a.status_code for a in answers] == [200]
            assert await server.proc.wait() == 0, await server.stderr()
