"""A real redis-server on a free loopback port, for the tests of the Redis limits and cache.

``.ci/run`` installs redis-server when it is missing and sets
``TRIO_DSPY_REQUIRE_REDIS=1``, so there a missing server fails the tests; a
developer's machine without it skips them (and says why).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid

import pytest

REDIS_SERVER = shutil.which("redis-server")
NO_PERSISTENCE = ("--save", "", "--appendonly", "no")


def free_port() -> int:
    """A loopback port nobody listens on (for now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisProcess:
    """``redis-server`` without persistence on 127.0.0.1:``port``; :meth:`stop` ends it."""

    def __init__(self) -> None:
        if REDIS_SERVER is None:
            why = "redis-server is not installed (apt-get install redis-server)"
            if os.environ.get("TRIO_DSPY_REQUIRE_REDIS") == "1":
                pytest.fail(why)
            pytest.skip(why)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait (up to 10 s) until it accepts connections."""
        assert REDIS_SERVER is not None
        self._proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", *NO_PERSISTENCE],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server (killed after 5 s)."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


def namespace() -> str:
    """A namespace of its own for one test, so tests sharing a server never meet."""
    return f"test-{uuid.uuid4().hex[:12]}"
