"""``trio-dspy serve module:attr``: run a served app on hypercorn's trio worker, or the lean server.

``attr`` names an app made by :func:`~trio_dspy.serving.app`, a module, or a
mapping of names to modules (then the command's options make the app). The
first line printed is the URL the server listens on. Ctrl-C or SIGTERM stops
it gracefully: requests still running get ``--graceful-timeout`` seconds,
idle keep-alive connections are closed once they are answered.

``--server h11`` serves it with the lean HTTP/1.1 server
(:mod:`trio_dspy.serving.h11_server`) instead: less CPU per request, HTTP/1.1
only, meant behind a reverse proxy that speaks TLS and HTTP/2 to clients.

``--workers N`` runs N worker processes on one listening socket
(:mod:`trio_dspy.serving.supervisor`): limits such as ``--max-concurrency``
and in-memory caches are then per worker; share model limits and caches
between them with ``td.RedisLimits`` and ``td.RedisCache``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from ..errors import ConfigurationError
from ..heap import settle_heap
from ..modules.module import Module
from .app import DEFAULT_MAX_BODY_BYTES, ServingApp, app
from .h11_limits import HEADER_TIMEOUT, KEEP_ALIVE_TIMEOUT, MAX_HEADER_BYTES, Limits

__all__ = [
    "add_arguments",
    "load_target",
    "make_app",
    "positive_float",
    "positive_int",
    "prepare",
    "run_from_args",
    "run_served",
    "serve",
    "serve_until_stopped",
]


#: The servers ``--server`` names.
SERVERS = ("hypercorn", "h11")

#: Seconds a stopping server lets requests already read reach the app before it
#: counts the requests under way.
SETTLE = 0.1


def positive_int(text: str) -> int:
    """``text`` as an int of at least 1, for argparse (which turns the error into usage)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    """``text`` as a finite number above 0, for argparse (which turns the error into usage)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, got {text}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare ``serve``'s arguments on ``p``."""
    p.add_argument(
        "target",
        metavar="MODULE:ATTR",
        help="what to serve: an app from td.serving.app, a td.Module, or a dict of them by name "
        "(e.g. myapp.programs:app)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument("--port", type=int, default=8000, help="port to bind (0: a free one)")
    p.add_argument(
        "--lm",
        default=None,
        metavar="PROVIDER/MODEL",
        help="configure td.LM(PROVIDER/MODEL) as the default model (e.g. openai/gpt-4o-mini)",
    )
    p.add_argument("--lm-base-url", default=None, help="the model server's base URL")
    p.add_argument(
        "--lm-api-key-env",
        default=None,
        metavar="NAME",
        help="read the model server's API key from this environment variable",
    )
    p.add_argument("--max-concurrency", type=int, default=None, help="programs running at once")
    p.add_argument(
        "--request-timeout", type=float, default=None, help="each request's deadline in seconds"
    )
    p.add_argument(
        "--api-key-env",
        default=None,
        metavar="NAME",
        help="require `Authorization: Bearer <key>`, the key read from this environment "
        "variable (never from the command line, where other users can read it)",
    )
    p.add_argument(
        "--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, help="largest request body"
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="worker processes sharing the listening socket, each with its own trio run "
        "(limits such as --max-concurrency are per worker)",
    )
    p.add_argument(
        "--server",
        choices=SERVERS,
        default="hypercorn",
        help="the HTTP server: hypercorn's trio worker (HTTP/1.1, cleartext HTTP/2), or h11, "
        "the lean HTTP/1.1 server (less CPU per request; put a proxy in front for TLS and HTTP/2)",
    )
    p.add_argument(
        "--keep-alive-timeout",
        type=positive_float,
        default=KEEP_ALIVE_TIMEOUT,
        help="--server h11: seconds an idle keep-alive connection stays open (longer than "
        "the proxy's own idle timeout, so that the proxy closes first)",
    )
    p.add_argument(
        "--header-timeout",
        type=positive_float,
        default=HEADER_TIMEOUT,
        help="--server h11: seconds a request's head may take to arrive (else 408), and its "
        "body may stall",
    )
    p.add_argument(
        "--max-header-bytes",
        type=positive_int,
        default=MAX_HEADER_BYTES,
        help="--server h11: the largest request head (else 431)",
    )
    p.add_argument("--backlog", type=int, default=1024, help="connections waiting to be accepted")
    p.add_argument(
        "--graceful-timeout",
        type=float,
        default=5.0,
        help="seconds running requests get to finish after Ctrl-C",
    )


def load_target(target: str) -> Any:
    """The object ``"package.module:attr.sub"`` names.

    Raises:
        ConfigurationError: the text has no ``:``, the module cannot be
            imported, or it has no such attribute.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"{target!r}: write MODULE:ATTR, e.g. myapp.programs:app")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: serve modules of this folder
    try:
        value: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from None
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ConfigurationError(f"{module_name!r} has no attribute {attr!r}") from None
    return value


def make_app(target: Any, args: argparse.Namespace) -> ServingApp:
    """The app to serve: ``target`` itself, or one made of its programs with ``args``' settings.

    Raises:
        ConfigurationError: ``target`` is an app and app settings were given,
            the API key variable is unset, or ``target`` is neither an app nor programs.
    """
    api_key = None
    if args.api_key_env is not None:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise ConfigurationError(f"--api-key-env: ${args.api_key_env} is not set")
    settings = {
        "max_concurrency": args.max_concurrency,
        "request_timeout": args.request_timeout,
        "api_key": api_key,
    }
    if isinstance(target, ServingApp):
        given = [k for k, v in settings.items() if v is not None]
        if given or args.max_body_bytes != DEFAULT_MAX_BODY_BYTES:
            raise ConfigurationError(
                "the target is already an app: set its limits in td.serving.app(...), "
                f"not with --{(given or ['max_body_bytes'])[0].replace('_', '-')}"
            )
        return target
    if isinstance(target, Module) or (
        isinstance(target, Mapping) and all(isinstance(v, Module) for v in target.values())
    ):
        try:
            return app(target, max_body_bytes=args.max_body_bytes, **settings)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(str(exc)) from None
    raise ConfigurationError(
        f"cannot serve a {type(target).__name__}: name an app from td.serving.app, "
        "a td.Module or a dict of modules"
    )


def _configure_lm(args: argparse.Namespace) -> None:
    if args.lm is None:
        return
    from .. import settings
    from ..lm import LM

    key = None
    if args.lm_api_key_env is not None:
        key = os.environ.get(args.lm_api_key_env)
        if not key:
            raise ConfigurationError(f"--lm-api-key-env: ${args.lm_api_key_env} is not set")
    settings.configure(lm=LM(args.lm, base_url=args.lm_base_url, api_key=key))


async def serve(
    served: ServingApp,
    host: str,
    port: int,
    *,
    graceful_timeout: float = 5.0,
    backlog: int = 1024,
    shutdown: Callable[[], Any] | None = None,
    fd: int | None = None,
    server: str = "hypercorn",
    limits: Limits | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``served`` with hypercorn's trio worker until ``shutdown()`` returns.

    ``nursery.start`` returns the URLs it listens on. ``backlog`` is the
    listen queue: hypercorn's default of 100 makes the 101st of a burst of
    new connections wait for the kernel's SYN retry (a second or more).
    ``fd``, when given, is a listening socket inherited from the parent
    process, served instead of binding ``host:port``. ``server="h11"``
    serves with the lean server (:mod:`.h11_server`) under ``limits``.

    Raises:
        ConfigurationError: hypercorn is not installed (the ``serve`` extra),
            or ``server`` is neither ``"hypercorn"`` nor ``"h11"``.
        OSError: the address cannot be bound.
    """
    if server == "h11":
        from .h11_server import serve as serve_h11

        await serve_h11(
            served,
            host,
            port,
            graceful_timeout=graceful_timeout,
            backlog=backlog,
            shutdown=shutdown,
            fd=fd,
            limits=limits,
            task_status=task_status,
        )
        return
    if server != "hypercorn":
        raise ConfigurationError(f"no server {server!r}: choose one of {', '.join(SERVERS)}")
    try:
        from hypercorn.config import Config
        from hypercorn.trio import serve as hypercorn_serve
    except ImportError:
        raise ConfigurationError(
            "trio-dspy serve needs hypercorn: pip install 'trio_dspy[serve]'"
        ) from None
    config = Config()
    if fd is not None:
        config.bind = [f"fd://{fd}"]
    else:
        config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.graceful_timeout = graceful_timeout
    config.backlog = backlog
    config.accesslog = None
    config.errorlog = None  # the app logs through trio_dspy's loggers
    # No `server: hypercorn-h11` on every answer: it tells a scanner what to
    # try and costs each response (Date stays: RFC 9110 asks for it).
    config.include_server_header = False
    await hypercorn_serve(
        served,  # type: ignore[arg-type]
        config,
        shutdown_trigger=shutdown,
        task_status=task_status,
    )


def prepare(args: argparse.Namespace) -> ServingApp | None:
    """The app ``args`` describe, with the default model configured; ``None`` after
    printing why it cannot be served."""
    try:
        served = make_app(load_target(args.target), args)
        _configure_lm(args)
    except ConfigurationError as exc:
        print(f"trio-dspy serve: {exc}", file=sys.stderr)
        return None
    return served


async def serve_until_stopped(
    served: ServingApp,
    args: argparse.Namespace,
    on_ready: Callable[[list[str]], None],
    *,
    signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM),
    fd: int | None = None,
    watch: Callable[[Callable[[], None]], Awaitable[None]] | None = None,
) -> None:
    """Serve ``served`` until one of ``signals`` arrives or ``watch(stop)`` calls ``stop``.

    ``on_ready`` gets the URLs once the server listens. Running requests
    then get ``args.graceful_timeout`` seconds to finish.

    Raises:
        ConfigurationError: hypercorn is not installed.
        OSError: the address cannot be bound (grouped, from hypercorn's nursery).
    """
    with trio.open_signal_receiver(*signals) as received:
        stop = trio.Event()

        async def on_signal() -> None:
            async for _ in received:
                stop.set()
                return

        async with trio.open_nursery() as helpers:
            helpers.start_soon(on_signal)
            if watch is not None:
                helpers.start_soon(watch, stop.set)
            run = functools.partial(
                serve,
                served,
                args.host,
                args.port,
                graceful_timeout=args.graceful_timeout,
                backlog=args.backlog,
                shutdown=stop.wait,
                fd=fd,
                server=args.server,
                limits=Limits(
                    max_header_bytes=args.max_header_bytes,
                    header_timeout=args.header_timeout,
                    keep_alive_timeout=args.keep_alive_timeout,
                ),
            )
            async with trio.open_nursery() as server:
                binds = await server.start(run)
                settle_heap()
                on_ready(binds)
                await stop.wait()
                if args.server == "hypercorn":
                    # hypercorn has stopped accepting; it would hold idle
                    # keep-alive connections open until the grace ends, so
                    # once the requests under way are answered, it is closed.
                    # (The lean server closes them itself, then runs the
                    # app's lifespan shutdown, which a cancel would cut.)
                    await trio.sleep(SETTLE)  # requests read just before the stop reach the app
                    with trio.move_on_after(args.graceful_timeout):
                        await served.drained()
                    server.cancel_scope.cancel()
            # The server has returned: its requests have finished (or their
            # grace ran out), so what is still watching for a stop can go.
            helpers.cancel_scope.cancel()


def run_served(args: argparse.Namespace, main: Callable[[], Awaitable[None]]) -> int:
    """``trio.run(main)``; the exit code, with a message when the server could not start."""
    failed: list[str] = []
    try:
        trio.run(main)
    except* ConfigurationError as group:
        failed.append(str(group.exceptions[0]))
    except* OSError as group:
        # The bind fails inside hypercorn's nursery, so it arrives grouped.
        failed.append(f"cannot listen on {args.host}:{args.port}: {group.exceptions[0]}")
    if failed:
        print(f"trio-dspy serve: {failed[0]}", file=sys.stderr)
        return 1
    return 0


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``trio-dspy serve`` in this process until Ctrl-C or SIGTERM, printing the URL first.

    Returns the exit code: 0 after a clean stop, 1 when the target cannot be
    served or the address cannot be bound (the message says which).
    """
    served = prepare(args)
    if served is None:
        return 1

    def ready(binds: list[str]) -> None:
        print(binds[0], flush=True)

    return run_served(args, functools.partial(serve_until_stopped, served, args, ready))
