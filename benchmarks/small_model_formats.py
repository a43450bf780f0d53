"""Typed answers from a small local model: ChatAdapter with and without the structured re-ask.

Run a small model behind an OpenAI-compatible server, e.g. gemma-3-270m with
llama-cpp-python's server::

    python -m llama_cpp.server --model gemma-3-270m-q4_k_m.gguf \\
        --chat_format gemma --port 8765 --n_ctx 4096

then::

    python benchmarks/small_model_formats.py --base-url http://127.0.0.1:8765/v1

(``--sim`` runs against the simulated server playing such a model instead.)

Four coffee-shop orders go to the model one at a time (a local server
answers one request at a time), through a signature with an enum and a list
output, in three settings:

* ``chat, no re-ask in JSON``: ``ChatAdapter(use_json_adapter_fallback=False)``,
  the free-text re-ask alone (the behaviour before the structured re-ask);
* ``chat (default)``: ``ChatAdapter()``, whose first re-ask after a parse
  failure is the JSONAdapter request with ``response_format``;
* ``json``: ``JSONAdapter()`` from the first call.

For each: typed answers (the calls that parsed into the signature's types;
a base model answers at chance, so this counts parses, not correct orders),
model calls, and wall time.
"""

from __future__ import annotations

import argparse
import enum
import time
from contextlib import AsyncExitStack

import trio

import trio_dspy as td
from trio_dspy.errors import AdapterParseError

ORDERS = (
    "A large iced latte with oat milk, please.",
    "Small espresso, no sugar.",
    "Medium cappuccino with cinnamon and an extra shot.",
    "Can I get a large hot chocolate with whipped cream?",
)


class Size(enum.Enum):
    small = "small"
    medium = "medium"
    large = "large"


class TakeOrder(td.Signature):
    """Take the customer's coffee order."""

    request: str = td.InputField(desc="what the customer said")
    size: Size = td.OutputField(desc="the cup size")
    extras: list[str] = td.OutputField(desc="milk, syrups and toppings asked for")


SETTINGS: tuple[tuple[str, td.Adapter], ...] = (
    ("chat, no re-ask in JSON", td.ChatAdapter(use_json_adapter_fallback=False)),
    ("chat (default)", td.ChatAdapter()),
    ("json", td.JSONAdapter()),
)


async def run_setting(lm: td.LM, adapter: td.Adapter) -> tuple[int, int, float]:
    """Typed answers, model calls and wall seconds for the four orders."""
    typed = 0
    before = len(lm.history)
    start = time.perf_counter()
    with td.context(lm=lm, adapter=adapter):
        for order in ORDERS:
            try:
                await td.Predict(TakeOrder)(request=order)
            except AdapterParseError:
                continue
            typed += 1
    return typed, len(lm.history) - before, time.perf_counter() - start


async def main(base_url: str | None, max_tokens: int, sim: bool) -> None:
    async with AsyncExitStack() as stack:
        if sim:
            from trio_dspy.testing import SimConfig, serve_sim, small_model_script

            config = SimConfig(script=small_model_script(), supports_json_schema=False)
            base_url = (await stack.enter_async_context(serve_sim(config))).base_url
        print(f"{'setting':<26}{'typed':>7}{'calls':>7}{'wall s':>9}")
        for name, adapter in SETTINGS:
            # A fresh LM each time: each setting finds out the server's formats itself.
            lm = td.LM("openai/gemma", base_url=base_url, api_key="none", max_tokens=max_tokens)
            async with lm:
                typed, calls, wall = await run_setting(lm, adapter)
            print(f"{name:<26}{f'{typed}/{len(ORDERS)}':>7}{calls:>7}{wall:>9.1f}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8765/v1")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--sim", action="store_true", help="use the simulated small model")
    args = parser.parse_args()
    trio.run(main, args.base_url, args.max_tokens, args.sim)
