"""What ``trio-dspy serve --workers N`` serves in the tests: a program that says which process ran it.

``pid`` answers after ``seconds`` with the serving process's id, so a test
can count the workers that answered and hold requests open while it stops
or kills processes.
"""

from __future__ import annotations

import os

import trio

import trio_dspy as td


class Pid(td.Module):
    """Sleep ``seconds``, then answer with this process's id."""

    async def forward(self, seconds: float = 0.0) -> td.Prediction:
        await trio.sleep(seconds)
        return td.Prediction(pid=os.getpid())


programs = {"pid": Pid()}
