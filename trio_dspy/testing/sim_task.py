"""A task the simulated server solves better when the instructions say the right things.

Optimizers that rewrite instructions (GEPA, MIPROv2, SIMBA, COPRO) need a model
whose accuracy depends on the instructions, to show that a run really
improves a program, deterministically and fast. :class:`InstructionTask` is
that model, played by the simulated server through its ``script`` hook:

* each question (``"Item 17: which shelf code?"``) has a gold code and one
  *relevant phrase*, drawn from :attr:`InstructionTask.phrases` (kept out of
  every prompt);
* the model answers an item correctly when the system prompt (where the
  instructions go) contains that item's phrase, or by luck for a fixed
  ``base_accuracy`` share of the items; so accuracy grows with every phrase
  the instructions gain, and never falls;
* :meth:`InstructionTask.metric` is a feedback metric: a wrong answer's
  feedback names the phrase that item needed;
* as a reflection model, the server reads GEPA's reflection prompt (the
  current instructions between triple backticks, then feedback) and proposes
  the instructions plus every phrase the feedback named, in a fenced block;
* asked for a ``proposed_instruction`` (MIPROv2's and COPRO's proposers) it
  proposes the base instructions with a random, seeded subset of the phrases,
  so some proposals are better than others and a search can find them;
* asked for ``module_advice`` (SIMBA's ``OfferFeedback``) it advises each
  module listed in ``module_names`` to say every phrase the request's
  feedback named;
* with ``sampling_luck`` above 0, a request sampled at a temperature of 1.0 or
  more answers an item its instructions miss right with that probability,
  drawn from the request and its rollout id (seen in process only: a rollout
  id is never sent), so samples of one prompt differ as a real model's do.

Everything is a pure function of the seed and the request, so runs repeat.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ..primitives import Example, Prediction
from .sim_answers import SimReply, build_answer, read_request
from .sim_config import Script

if TYPE_CHECKING:
    from ..messages import LMRequest
    from .dummy import DummyLM

__all__ = ["DEFAULT_PHRASES", "InstructionTask"]

DEFAULT_PHRASES = (
    "read the item number first",
    "look the item up in the shelf ledger",
    "prefix the code with its aisle letter",
    "answer with the code alone",
)

_ITEM = re.compile(r"\bItem (\d+):")
_FENCE = re.compile(r"```(?:[^\n`]*)\n?(.*?)```", re.DOTALL)
_CURRENT = re.compile(r"\[\[ ## current_instruction ## \]\]\n(.*?)\n\n\[\[ ## ", re.DOTALL)
# Feedback quotes the phrase; inside JSON (DSPy 3.4's proposer) the quotes are escaped.
_NAMED = re.compile(r'should say \\?"([^"\\]+)\\?"')
_MODULE_NAMES = re.compile(r"\[\[ ## module_names ## \]\]\n(.*?)(?:\n\n|\Z)", re.DOTALL)
_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"


def _unit(*parts: object) -> float:
    """A uniform number in ``[0, 1)`` that depends only on ``parts``."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@attrs.frozen
class InstructionTask:
    """Shelf-code questions whose accuracy depends on phrases in the instructions.

    Args:
        phrases: what good instructions say; each item needs one of them.
        base_accuracy: the share of items answered right whatever the prompt.
        seed: picks the codes, each item's phrase and its luck.
        instructions: the task's plain starting instructions (what a
            proposer's answers build on).
        sampling_luck: the chance that a sampled answer (temperature 1.0 or
            more) to an item the instructions miss is right anyway; 0 (the
            default) answers every request as at temperature 0.
    """

    phrases: tuple[str, ...] = DEFAULT_PHRASES
    base_accuracy: float = 0.25
    seed: int = 0
    instructions: str = "Given the question, produce the shelf code."
    sampling_luck: float = 0.0

    def __attrs_post_init__(self) -> None:
        if not self.phrases:
            raise ValueError("an InstructionTask needs at least one phrase")
        if not 0.0 <= self.base_accuracy <= 1.0:
            raise ValueError(f"base_accuracy must be in [0, 1], got {self.base_accuracy}")
        if not 0.0 <= self.sampling_luck <= 1.0:
            raise ValueError(f"sampling_luck must be in [0, 1], got {self.sampling_luck}")

    # ----------------------------------------------------------- the task
    def question(self, item: int) -> str:
        """The question asked about ``item``."""
        return f"Item {item}: which shelf code?"

    def code(self, item: int) -> str:
        """The gold shelf code of ``item``."""
        u = _unit(self.seed, "code", item)
        return f"{_LETTERS[int(u * len(_LETTERS))]}-{int(u * 1e9) % 9000 + 1000}"

    def phrase(self, item: int) -> str:
        """The phrase the instructions must contain for ``item`` to be answered right."""
        return self.phrases[int(_unit(self.seed, "phrase", item) * len(self.phrases))]

    def lucky(self, item: int) -> bool:
        """Whether ``item`` is answered right whatever the instructions say."""
        return _unit(self.seed, "luck", item) < self.base_accuracy

    def examples(self, count: int, *, start: int = 0) -> list[Example]:
        """``count`` examples (items ``start``, ``start + 1``, ...) with ``question`` as input."""
        return [
            Example(question=self.question(i), answer=self.code(i)).with_inputs("question")
            for i in range(start, start + count)
        ]

    def accuracy(self, instructions: str, items: Sequence[int]) -> float:
        """The share of ``items`` the model answers right under ``instructions``."""
        if not items:
            return 0.0
        return sum(self._knows(instructions, i) for i in items) / len(items)

    def _knows(self, system: str, item: int) -> bool:
        return self.lucky(item) or self.phrase(item).lower() in system.lower()

    # ----------------------------------------------------------- the metric
    def metric(
        self,
        gold: Example,
        pred: Any,
        trace: Any = None,
        pred_name: str | None = None,
        pred_trace: Any = None,
    ) -> Prediction:
        """Score 1.0 for the gold code, else 0.0 with feedback naming the missing phrase."""
        answer = str(getattr(pred, "answer", "")).strip()
        if answer == gold.answer:
            return Prediction(score=1.0, feedback="Correct.")
        match = _ITEM.search(str(gold.question))
        item = int(match.group(1)) if match else -1
        return Prediction(
            score=0.0,
            feedback=(
                f"Wrong: the shelf code is {gold.answer}, not {answer or 'nothing'}. "
                f'The instructions should say "{self.phrase(item)}".'
            ),
        )

    # ----------------------------------------------------------- the server
    def script(self) -> Script:
        """A :class:`~trio_dspy.testing.SimConfig` ``script`` that plays the model."""
        return self.answer

    def answer(self, body: Mapping[str, Any]) -> SimReply | None:
        """The model's answer to a request ``body`` (``None``: a generated one)."""
        return self._respond(body, body.get("temperature"), None)

    def _respond(
        self, body: Mapping[str, Any], temperature: Any, rollout: int | None
    ) -> SimReply | None:
        """The answer to ``body`` sampled at ``temperature`` as rollout ``rollout``."""
        try:
            request = read_request(body, "openai")
        except ValueError:
            return None
        if "`module_advice`" in request.system:  # SIMBA's OfferFeedback
            return SimReply(outputs=self._advise(request.last_user))
        if "```" in request.last_user and "instructions" in request.last_user:
            return SimReply(text=self._reflect(request.last_user))
        if "`new_instruction`" in request.system:  # DSPy 3.4's GEPA proposer
            current = _CURRENT.search(request.last_user)
            base = current.group(1).strip() if current else self.instructions
            # Its JSONAdapter sends no response_format to a model litellm does not know
            # and asks for JSON in the prompt alone: answer JSON whatever the request says.
            proposal = {"new_instruction": self._improved(base, request.last_user)}
            return SimReply(text=json.dumps(proposal), outputs=proposal)
        if "`proposed_instruction`" in request.system:
            return SimReply(outputs={"proposed_instruction": self._propose(body)})
        match = _ITEM.search(request.last_user)
        if match is None:
            return None
        item = int(match.group(1))
        right = self._knows(request.system, item)
        sampled = isinstance(temperature, int | float) and temperature >= 1.0
        if not right and sampled and self.sampling_luck > 0:
            key = json.dumps(body.get("messages"), sort_keys=True, default=str)
            right = _unit(self.seed, "sample", key, rollout) < self.sampling_luck
        answer = self.code(item) if right else self.code(item + 7919)
        return SimReply(outputs={"answer": answer})

    def dummy_lm(self, *, latency: float | Callable[[LMRequest], float] = 0.0) -> DummyLM:
        """The same model in process: a :class:`~trio_dspy.testing.DummyLM` answering as
        :meth:`script` does (the request read as a Chat Completions body)."""
        from .dummy import DummyLM

        def answer(request: LMRequest) -> str:
            body = {
                "messages": [{"role": m.role, "content": m.text} for m in request.messages],
                **({"response_format": {"type": "json_object"}} if request.response_format else {}),
            }
            key = int.from_bytes(hashlib.sha256(json.dumps(body).encode()).digest()[:4], "big")
            reply = self._respond(body, request.params.get("temperature"), request.rollout_id)
            return build_answer(read_request(body, "openai"), key, reply).text

        return DummyLM(answer, latency=latency)

    def _reflect(self, prompt: str) -> str:
        """The reflection model's answer: the current instructions plus every phrase
        the feedback in ``prompt`` named, in a fenced block."""
        fenced = _FENCE.search(prompt)
        current = fenced.group(1).strip() if fenced else self.instructions
        return f"Here are the new instructions.\n```\n{self._improved(current, prompt)}\n```"

    def _improved(self, current: str, prompt: str) -> str:
        """``current`` plus every phrase the feedback in ``prompt`` named that it lacks."""
        missing = [
            p for p in dict.fromkeys(_NAMED.findall(prompt)) if p.lower() not in current.lower()
        ]
        return current if not missing else f"{current} Also: {'; '.join(missing)}."

    def _advise(self, prompt: str) -> dict[str, Any]:
        """SIMBA's rule model: advice for each listed module, naming every phrase the
        feedback in ``prompt`` named (the discussion says which)."""
        phrases = list(dict.fromkeys(_NAMED.findall(prompt)))
        listed = _MODULE_NAMES.search(prompt)
        try:
            names = json.loads(listed.group(1)) if listed else []
        except ValueError:
            names = []
        if not isinstance(names, list):
            names = []
        if not phrases:
            return {"discussion": "Both trajectories did the same.", "module_advice": {}}
        advice = (
            f"If the module receives a shelf-code question, then it should {'; '.join(phrases)}."
        )
        return {
            "discussion": f"The worse trajectory missed: {'; '.join(phrases)}.",
            "module_advice": {str(name): advice for name in names},
        }

    def _propose(self, body: Mapping[str, Any]) -> str:
        """A proposer's answer: the base instructions with a seeded subset of the phrases."""
        key = json.dumps(body, sort_keys=True, default=str)
        chosen = [p for p in self.phrases if _unit(self.seed, "propose", key, p) < 0.5]
        if not chosen:
            return self.instructions
        return f"{self.instructions} Be sure to: {'; '.join(chosen)}."
