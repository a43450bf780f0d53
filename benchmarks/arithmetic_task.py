"""The task both optimizer benchmarks share, with no dependency but the standard library.

Questions are ``What is A + B?``. The simulated model's answer depends on the
question and on the few-shot demos in the prompt (how many, and which), so
candidate programs differ in score, deterministically: the same prompt
always gets the same answer, whichever library sent it.
"""

from __future__ import annotations

import random
import re
from typing import Any

QUESTION = re.compile(r"What is (\d+) \+ (\d+)\?")


def examples(n: int, seed: int) -> list[dict[str, str]]:
    """``n`` questions with their answers, drawn with ``seed``."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randrange(100), rng.randrange(100)
        out.append({"question": f"What is {a} + {b}?", "answer": str(a + b)})
    return out


def answer(messages: list[dict[str, Any]]) -> str:
    """The simulated model's answer to a chat whose last user turn asks a question."""
    texts = [m.get("content") for m in messages if m.get("role") in ("user", "assistant")]
    texts = [t for t in texts if isinstance(t, str)]
    asked = QUESTION.findall(texts[-1]) if texts else []
    if not asked:
        return "I do not know"
    a, b = map(int, asked[-1])
    demos = [tuple(map(int, q)) for t in texts[:-1] for q in QUESTION.findall(t)]
    # Which demos the prompt holds decides how often the model is right: from
    # 3 in 10 with none up to 9 in 10, so candidate programs really differ.
    quality = sum(x * 3 + y for x, y in demos) % 7 if demos else 0
    right = (a * 7 + b) % 10 < 3 + quality
    return str(a + b) if right else str(a + b + 1)
