"""One worker process of ``trio-dspy serve --workers N`` (started by :mod:`.supervisor`).

Run as ``python -m trio_dspy.serving.worker LISTEN_FD PARENT_FD READY_FD SETTINGS``:
it serves the listening socket it inherited on its own trio run, writes one
byte to ``READY_FD`` once it accepts connections, and stops gracefully on
SIGTERM or when ``PARENT_FD`` (a pipe only the parent can write) reaches its
end, which happens when the parent exits, even killed by SIGKILL: a worker
never outlives its parent. ``SETTINGS`` is ``serve``'s options as JSON.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import sys
from collections.abc import Callable

import trio

from .run import prepare, run_served, serve_until_stopped

__all__ = ["main"]


async def _watch_parent(parent_fd: int, stop: Callable[[], None]) -> None:
    """Call ``stop`` once the parent's pipe ends: the parent is gone."""
    async with trio.lowlevel.FdStream(parent_fd) as pipe:
        while await pipe.receive_some():
            pass  # the parent never writes; only its end matters
    stop()


def main(argv: list[str]) -> int:
    """Serve as one worker with the descriptors and settings ``argv`` names; the exit code.

    Returns 0 after a graceful stop, 1 when the target cannot be served.
    """
    # Ctrl-C in a terminal reaches the whole process group; the parent alone
    # decides, and stops the workers with SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    listen_fd, parent_fd, ready_fd = (int(a) for a in argv[:3])
    args = argparse.Namespace(**json.loads(argv[3]))
    served = prepare(args)
    if served is None:
        return 1

    def ready(binds: list[str]) -> None:
        os.write(ready_fd, b".")
        os.close(ready_fd)

    main = functools.partial(
        serve_until_stopped,
        served,
        args,
        ready,
        signals=(signal.SIGTERM,),
        fd=listen_fd,
        watch=functools.partial(_watch_parent, parent_fd),
    )
    return run_served(args, main)


if __name__ == "__main__":  # pragma: no cover - run by the supervisor
    sys.exit(main(sys.argv[1:]))
