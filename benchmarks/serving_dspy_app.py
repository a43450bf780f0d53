"""DSPy's serving recipe for ``benchmarks/serving.py``: FastAPI + ``dspy.asyncify`` under uvicorn.

As DSPy's deployment tutorial writes it: the program wrapped by
``dspy.asyncify`` (it runs in worker threads, ``async_max_workers`` of them,
DSPy's default unless ``DSPY_ASYNC_MAX_WORKERS`` is set), one POST route
that returns ``result.toDict()``. Imports nothing from trio_dspy: it runs in
an environment that has dspy, fastapi and uvicorn. ``SIM_URL`` is the
simulated server's base URL.
"""

from __future__ import annotations

import os

import dspy
from fastapi import FastAPI
from pydantic import BaseModel

dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
lm = dspy.LM("openai/sim-model", api_base=os.environ["SIM_URL"], api_key="k", cache=False)
workers = os.environ.get("DSPY_ASYNC_MAX_WORKERS")
if workers:
    dspy.settings.configure(lm=lm, adapter=dspy.ChatAdapter(), async_max_workers=int(workers))
else:
    dspy.settings.configure(lm=lm, adapter=dspy.ChatAdapter())

app = FastAPI()
qa = dspy.asyncify(dspy.Predict("question -> answer"))


class Question(BaseModel):
    question: str


@app.post("/programs/qa")
async def predict(body: Question) -> dict[str, object]:
    result = await qa(question=body.question)
    return {"outputs": result.toDict()}
