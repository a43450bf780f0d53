"""A worker process for the durable-run tests: an agent or an evaluation inside
``td.durable``, against the simulated server, printing what it got as JSON.

    python -m tests.journal_worker react    --base-url URL --journal sqlite:PATH --run-id ID ...
    python -m tests.journal_worker evaluate --base-url URL --journal redis:URL --run-id ID ...
    python -m tests.journal_worker decide   --journal ... --run-id ID --call-id C --approved 1

``react``: a native tool-calling agent with ``lookup`` and ``refund``; each
refund appends a line to ``--effects`` (the side effect that must happen
once). ``evaluate``: ``--examples`` questions ``q0``, ``q1``, ... whose right
answer is ``a0``, ``a1``, ... The run prints ``{"approval": ...}`` when it
stopped for an approval.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import trio

import trio_dspy as td
from trio_dspy.errors import ApprovalRequired
from trio_dspy.journal import JournalStore


def open_journal(spec: str, namespace: str) -> JournalStore:
    kind, _, where = spec.partition(":")
    if kind == "sqlite":
        return td.Journal(where)
    return td.RedisJournal(where, namespace=namespace, lock_ttl=1.0)


def react_program(effects: str, approval: bool) -> td.ReAct:
    def lookup(order_id: str) -> str:
        """Look an order up."""
        return f"order {order_id}: 12 EUR, paid"

    def refund(order_id: str) -> str:
        """Refund an order."""
        with open(effects, "a") as file:
            file.write(f"refund {order_id}\n")
        return f"refunded {order_id}"

    return td.ReAct(
        "request -> answer", tools=[lookup, td.Tool(refund, requires_approval=approval)]
    )


async def react(args: argparse.Namespace, journal: JournalStore) -> dict[str, Any]:
    agent = react_program(args.effects, args.approval)
    async with td.durable(args.run_id, journal) as run:
        pred = await agent(request="Please refund order A1")
    steps = [(c.name, c.observation, c.ok) for s in pred.trajectory.steps for c in s.calls]
    return {"answer": pred.answer, "steps": steps, "live": run.live, "replayed": run.replayed}


async def evaluate(args: argparse.Namespace, journal: JournalStore) -> dict[str, Any]:
    devset = [
        td.Example(question=f"q{i}", answer=f"a{i}").with_inputs("question")
        for i in range(args.examples)
    ]

    def exact(example: td.Example, pred: td.Prediction) -> bool:
        return bool(example.answer == pred.answer)

    evaluation = td.Evaluate(devset=devset, metric=exact, num_threads=4)
    async with td.durable(args.run_id, journal) as run:
        result = await evaluation(td.Predict("question -> answer"))
    answers = [getattr(pred, "answer", repr(pred)) for _, pred, _ in result.results]
    return {"score": result.score, "answers": answers, "live": run.live, "replayed": run.replayed}


async def main(args: argparse.Namespace) -> None:
    journal = open_journal(args.journal, args.namespace)
    if args.command == "decide":
        await journal.decide(args.run_id, args.call_id, approved=args.approved, note=args.note)
        print(json.dumps({"decided": args.call_id}))
        return
    lm = td.LM("openai/sim-model", base_url=args.base_url, api_key="worker-key", max_retries=0)
    with td.context(lm=lm):
        try:
            report = await (react if args.command == "react" else evaluate)(args, journal)
        except ApprovalRequired as stop:
            requests = [
                {"call_id": r.call_id, "tool": r.tool, "arguments": r.arguments}  # type: ignore[attr-defined]
                for r in stop.requests
            ]
            report = {"approval": {"run_id": stop.run_id, "requests": requests}}
    print(json.dumps(report), flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["react", "evaluate", "decide"])
    parser.add_argument("--base-url", default="")
    parser.add_argument("--journal", required=True)
    parser.add_argument("--namespace", default="trio_dspy")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--effects", default="/dev/null")
    parser.add_argument("--approval", action="store_true")
    parser.add_argument("--examples", type=int, default=12)
    parser.add_argument("--call-id", default="")
    parser.add_argument("--approved", type=int, default=1)
    parser.add_argument("--note", default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    trio.run(main, parse(sys.argv[1:]))
