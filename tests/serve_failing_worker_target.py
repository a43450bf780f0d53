"""What ``trio-dspy serve --workers N`` cannot serve in its workers: a target that loads
in the parent (which checks it before anything listens) and fails in each worker,
as one whose start-up needs something only the parent's environment gives."""

from __future__ import annotations

import sys

import trio_dspy as td

if sys.argv[0].endswith("worker.py"):  # run as python -m trio_dspy.serving.worker
    raise RuntimeError("the model's weights are not mounted in this worker")

programs = {"qa": td.Predict("question -> answer")}
