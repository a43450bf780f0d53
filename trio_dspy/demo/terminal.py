"""Terminal helpers of the ``trio-dspy`` commands: help text, and a quiet exit on a closed pipe."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable

__all__ = ["BROKEN_PIPE_EXIT", "HelpFormatter", "exit_quietly_on_broken_pipe", "plain_text"]

# What a process killed by SIGPIPE reports in a shell (128 + 13).
BROKEN_PIPE_EXIT = 141


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the descriptions' paragraphs and shows each option's default.

    Unlike ``argparse.ArgumentDefaultsHelpFormatter`` it says nothing of a
    default that is ``None``, ``False`` or empty (an option that is off).
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "(default" in text
            or not action.option_strings
            or default in (None, False, [], argparse.SUPPRESS)
        ):
            return text
        return f"{text} (default: %(default)s)"


def plain_text(doc: str | None) -> str:
    """A docstring as terminal text: RST and markdown markup (``code``, **bold**) removed."""
    text = doc or ""
    text = re.sub(r"``(.+?)``", r"\1", text)
    text = re.sub(r"\*\*(.+?)\*\*", r"\1", text)
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)
    return text.strip()


def exit_quietly_on_broken_pipe(
    run: Callable[[argparse.Namespace], int], args: argparse.Namespace
) -> int:
    """``run(args)``, except that a closed standard output (``| head``) ends it quietly.

    A reader that stops early closes the pipe; the next write raises
    ``BrokenPipeError`` (inside an ``ExceptionGroup`` when it happens in a
    trio task). Like other command-line tools, exit with 141 (as if killed
    by SIGPIPE) and no traceback; standard output is pointed at devnull so
    the interpreter's final flush does not fail again.
    """
    try:
        code = run(args)
        sys.stdout.flush()
    except (BrokenPipeError, BaseExceptionGroup) as exc:
        if not _only_broken_pipes(exc):
            raise
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return BROKEN_PIPE_EXIT
    return code


def _only_broken_pipes(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_broken_pipes(inner) for inner in exc.exceptions)
    return isinstance(exc, BrokenPipeError)
