"""A user program type-checks against trio_dspy with ``mypy --strict``.

The package ships ``py.typed``, so mypy reads its annotations instead of
treating it as untyped (where ``class X(td.Signature)`` would be an error:
the base class would be ``Any``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import trio_dspy

pytest.importorskip("mypy")

PROGRAM = textwrap.dedent(
    '''
    import enum

    import attrs
    import trio

    import trio_dspy as td
    from trio_dspy.testing import DummyLM


    class Mood(enum.Enum):
        happy = "happy"
        upset = "upset"


    @attrs.frozen
    class Refund:
        order_id: str
        amount: float


    class HandleCustomer(td.Signature):
        """Decide what the coffee shop should do for the customer."""

        request: str = td.InputField(desc="what the customer said")
        mood: Mood = td.InputField()
        action: Refund = td.OutputField()
        confidence: float = td.OutputField(desc="between 0 and 1")


    class Shop(td.Module):
        def __init__(self) -> None:
            super().__init__()
            self.handle = td.ChainOfThought(HandleCustomer)

        # A typed forward, as the README writes it, and a typed call result.
        async def forward(self, request: str, mood: Mood) -> td.Prediction:
            return await self.handle(request=request, mood=mood)


    async def main() -> float:
        lm = DummyLM([{"reasoning": "r", "action": {}, "confidence": 1.0}])
        with td.context(lm=lm):
            pred = await Shop()(request="terrible", mood=Mood.upset)
        confidence: float = pred.confidence
        return confidence


    # Names imported on first use are typed too.
    kit = td.testing.DummyLM
    tools: tuple[type[td.Evaluate], type[td.optimizers.Optimizer]] = (td.Evaluate, td.LabeledFewShot)
    td.not_a_name  # type: ignore[attr-defined]  # a misspelt name stays an error


    if __name__ == "__main__":
        trio.run(main)
    '''
)


@pytest.mark.slow
def test_user_program_passes_mypy_strict(tmp_path: Path) -> None:
    (tmp_path / "program.py").write_text(PROGRAM)
    # Run from the temporary folder, so the project's own mypy configuration
    # does not apply and trio_dspy is found as an installed package.
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--python-executable",
            sys.executable,
            "program.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


def test_package_is_marked_typed() -> None:
    assert (Path(trio_dspy.__file__).parent / "py.typed").is_file()
