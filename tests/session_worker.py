"""One process of the multi-process session tests.

``python -m tests.session_worker sqlite PATH SESSION --turns N --worker W``
appends N turns to a SQLite session; ``redis URL SESSION --namespace NS``
instead runs N ``td.chat`` turns on a Redis session with a model that
answers how many earlier turns it was shown. Prints one JSON line:
``{"answers": [...]}``. ``--start-at`` (a ``time.time()``) delays the
turns until then, so that processes started together overlap.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import trio

import trio_dspy as td
from trio_dspy.lm import LMRequest
from trio_dspy.testing import DummyLM


def earlier_turns(request: LMRequest) -> dict[str, Any]:
    """The answer: the number of assistant turns the model was shown."""
    return {"answer": str(sum(m.role == "assistant" for m in request.messages))}


async def work(args: argparse.Namespace) -> list[str]:
    # Both processes start their turns together, whatever their import took.
    await trio.sleep(max(0.0, args.start_at - time.time()))
    if args.store == "sqlite":
        sqlite = td.sessions.SQLiteSession(args.target, args.session)
        for i in range(args.turns):
            await sqlite.append({"question": f"{args.worker}-{i}"}, {"answer": "ok"})
        return []
    session = td.sessions.RedisSession(args.target, args.session, namespace=args.namespace)
    bot = td.chat(td.Predict("question, history: History -> answer"), session)
    answers = []
    with td.context(lm=DummyLM(earlier_turns, latency=0.02)):
        for i in range(args.turns):
            answers.append((await bot(question=f"{args.worker}-{i}")).answer)
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("store", choices=["sqlite", "redis"])
    parser.add_argument("target")
    parser.add_argument("session")
    parser.add_argument("--namespace", default="trio_dspy")
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--start-at", type=float, default=0.0, help="wall-clock time to start")
    args = parser.parse_args()
    print(json.dumps({"answers": trio.run(work, args)}), flush=True)


if __name__ == "__main__":
    main()
