"""Optimize the coffee shop's first decision: what to do for a customer.

60 labelled customer requests (examples/data/coffee_requests.jsonl) are split
in two halves. The program is scored on the dev half, compiled on the train
half, and scored again:

    python examples/optimize_coffee_shop.py                  # the simulated server
    python examples/optimize_coffee_shop.py --optimizer gepa --budget 150   # or mipro, simba
    python examples/optimize_coffee_shop.py --model openai/gemma --base-url http://127.0.0.1:8080/v1

Against the simulated server (the default) answers are random but valid, so
the scores mean nothing: it shows the machinery. With ``--model`` any
OpenAI-compatible server is used (keys from OPENAI_API_KEY).
"""

from __future__ import annotations

import argparse
import enum
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

import trio_dspy as td
from trio_dspy.demo.coffee_shop import CustomerMood

DATA = Path(__file__).parent / "data" / "coffee_requests.jsonl"


class Decision(enum.Enum):
    """The kinds of action the coffee shop can take."""

    make_drink = "make_drink"
    refund = "refund"
    tell_joke = "tell_joke"
    escalate = "escalate"
    answer_question = "answer_question"


class DecideAction(td.Signature):
    """You are the barista of a small coffee shop. Decide what to do for the customer:
    make_drink for an order, refund for a complaint about something they paid for,
    tell_joke when they want to laugh, escalate for anything the manager must handle,
    answer_question for a question."""

    request: str = td.InputField(desc="what the customer said")
    mood: CustomerMood = td.InputField(desc="how the customer feels")
    decision: Decision = td.OutputField(desc="what to do")


def right_decision(example: td.Example, pred: td.Prediction, trace: Any = None) -> bool:
    """The metric: the decision is the labelled one."""
    return bool(pred.decision == example.decision)


def decision_feedback(
    gold: td.Example,
    pred: td.Prediction,
    trace: Any = None,
    pred_name: str | None = None,
    pred_trace: Any = None,
) -> td.Prediction:
    """The metric with feedback, for GEPA: what the decision should have been."""
    decision = getattr(pred, "decision", None)
    if decision == gold.decision:
        return td.Prediction(score=1.0, feedback="Correct.")
    said = decision.value if isinstance(decision, Decision) else decision
    return td.Prediction(
        score=0.0,
        feedback=f"The customer said {gold.request!r} ({gold.mood.value}): the right decision "
        f"is {gold.decision.value}, not {said}.",
    )


def make_optimizer(name: str, limit: int, lm: td.BaseLM, budget: int) -> td.optimizers.Optimizer:
    """The optimizer ``name`` with settings that suit a small model."""
    if name == "gepa":
        return td.GEPA(decision_feedback, reflection_lm=lm, max_metric_calls=budget, limit=limit)
    if name == "mipro":
        return td.MIPROv2(right_decision, auto="light", limit=limit)
    if name == "simba":
        return td.SIMBA(
            decision_feedback, bsize=8, num_candidates=4, max_steps=4, max_demos=4, limit=limit
        )
    if name == "labeled":
        return td.LabeledFewShot(k=8)
    if name == "bootstrap":
        return td.BootstrapFewShot(
            right_decision, max_bootstrapped_demos=4, max_labeled_demos=8, limit=limit
        )
    if name == "random-search":
        return td.BootstrapFewShotWithRandomSearch(
            right_decision,
            num_candidate_programs=4,
            max_bootstrapped_demos=4,
            max_labeled_demos=8,
            limit=limit,
        )
    return td.COPRO(right_decision, breadth=4, depth=2, limit=limit)


async def run(args: argparse.Namespace) -> None:
    """Load, split, score, compile, score again, and print what happened."""
    examples = td.datasets.load_jsonl(
        DATA, input_keys=["request", "mood"], types={"mood": CustomerMood, "decision": Decision}
    )
    trainset, devset = td.datasets.split(examples, 0.5, seed=args.seed)
    async with AsyncExitStack() as stack:
        if args.model:
            lm = td.LM(args.model, base_url=args.base_url, temperature=0.0, max_tokens=256)
        else:
            sim = await stack.enter_async_context(
                td.testing.serve_sim(td.testing.SimConfig(latency=0.05))
            )
            lm = td.LM("openai/sim-model", base_url=sim.base_url, api_key="sim")
        await stack.enter_async_context(lm)
        adapter = td.JSONAdapter() if args.adapter == "json" else td.ChatAdapter()
        program = td.Predict(DecideAction)
        evaluate = td.Evaluate(devset, right_decision, limit=args.limit, progress=False)
        with td.context(lm=lm, adapter=adapter), td.track_usage() as usage:
            t0 = time.perf_counter()
            before = await evaluate(program)
            t1 = time.perf_counter()
            optimizer = make_optimizer(args.optimizer, args.limit, lm, args.budget)
            compiled = await optimizer.compile(program, trainset=trainset)
            t2 = time.perf_counter()
            after = await evaluate(compiled)
            t3 = time.perf_counter()
    print(f"model {args.model or 'simulated'}, adapter {args.adapter}, optimizer {args.optimizer}")
    print(f"train {len(trainset)}, dev {len(devset)}; demos after compiling: {len(compiled.demos)}")
    if compiled.signature.instructions != program.signature.instructions:
        print(f"instructions after compiling: {compiled.signature.instructions!r}")
    stats = optimizer.stats
    print(f"optimizer: {stats.lm_calls} LM calls, {stats.metric_calls} metric calls")
    print(f"dev accuracy before: {before.score:.1f}% ({t1 - t0:.1f} s, {before.errors} unparsed)")
    print(f"compile: {t2 - t1:.1f} s")
    print(f"dev accuracy after:  {after.score:.1f}% ({t3 - t2:.1f} s, {after.errors} unparsed)")
    print(f"total {t3 - t0:.1f} s, {usage.total_tokens} tokens")
    if args.save:
        compiled.save(args.save)
        print(f"compiled program saved to {args.save}")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="e.g. openai/gpt-4o-mini (default: simulated server)")
    parser.add_argument("--base-url", help="an OpenAI-compatible server's /v1 URL")
    parser.add_argument("--adapter", choices=["chat", "json"], default="chat")
    parser.add_argument(
        "--optimizer",
        choices=["labeled", "bootstrap", "random-search", "copro", "gepa", "mipro", "simba"],
        default="bootstrap",
    )
    parser.add_argument("--budget", type=int, default=150, help="GEPA's metric calls (default 150)")
    parser.add_argument("--limit", type=int, default=8, help="calls in flight (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/dev split")
    parser.add_argument("--save", help="write the compiled program to this JSON file")
    args = parser.parse_args(argv)
    trio.run(run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
