"""The simulated server answers DSPy's own ChatAdapter prompts too (for side-by-side runs)."""

from __future__ import annotations

import httpx

import trio_dspy as td
from trio_dspy.testing import serve_sim

# The layout DSPy's ChatAdapter sends: field lines end with ":" even without a description.
DSPY_SYSTEM = (
    "Your input fields are:\n1. `question` (str):\nYour output fields are:\n"
    "1. `answer` (str):\n2. `score` (float):\nAll interactions will be structured in the "
    "following way, with the appropriate values filled in.\n\n[[ ## question ## ]]\n{question}\n\n"
    "[[ ## answer ## ]]\n{answer}\n\n[[ ## score ## ]]\n{score}        # note: the value you "
    "produce must be a single float value\n\n[[ ## completed ## ]]\nIn adhering to this "
    "structure, your objective is: \n        Given the fields `question`, produce the fields "
    "`answer`, `score`."
)


async def test_dspy_style_prompt_gets_marker_sections() -> None:
    body = {
        "model": "sim-model",
        "messages": [
            {"role": "system", "content": DSPY_SYSTEM},
            {"role": "user", "content": "[[ ## question ## ]]\nhi"},
        ],
    }
    async with serve_sim() as server, httpx.AsyncClient() as client:
        reply = await client.post(f"{server.base_url}/chat/completions", json=body)
    text = reply.json()["choices"][0]["message"]["content"]
    sig = td.make_signature("question -> answer, score: float")
    values = td.ChatAdapter().parse(sig, text)
    assert isinstance(values["score"], float)
    assert values["answer"]
