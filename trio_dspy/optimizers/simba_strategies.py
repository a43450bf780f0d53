"""SIMBA's two ways of changing a program: append a demo, append a rule.

Both take a *bucket*: the runs of one minibatch example under each
trajectory model, best first. :func:`append_a_demo` turns the best run's
predictor calls into demos; :func:`append_a_rule` shows the best and the
worst run to a model (the :class:`OfferFeedback` signature, DSPy's words)
and appends its advice to each predictor's instructions. Both return
``False`` when the bucket has nothing to teach (the candidate is kept
anyway, as in DSPy).
"""

from __future__ import annotations

import inspect
import json
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ..lm.base import BaseLM
from ..modules.module import Module
from ..modules.predict import Predict
from ..primitives import Example
from ..settings import context
from ..signature import InputField, OutputField, Signature
from ..trace import collect_trace
from ..types import unstructure

__all__ = [
    "OfferFeedback",
    "Outcome",
    "append_a_demo",
    "append_a_rule",
    "inspect_modules",
    "poisson",
]

TRUNCATED = "\n\t\t... <TRUNCATED FOR BREVITY>"


@attrs.define
class Outcome:
    """One program run on one example, as DSPy's ``wrap_program`` returns it.

    ``trace`` holds ``(predictor name, inputs, outputs)`` for each predictor
    call; ``output_metadata`` the metric's fields other than ``score`` (its
    ``feedback``, say), which the rule model reads as reward info.
    """

    example: Example
    prediction: Mapping[str, Any] | None
    trace: list[tuple[str, dict[str, Any], dict[str, Any]]]
    score: float | str
    output_metadata: dict[str, Any] = attrs.field(factory=dict)


class OfferFeedback(Signature):
    """
    You will be given two trajectories of an LLM-driven program's execution. Your goal is to help the program's modules
    build up experience on how to maximize the reward value assigned to the program's outputs if it were to receive
    similar inputs in the future.

    The module won't see its own history. It will rely on your advice balancing being concrete and being generalizable.

    In your advice:
    - Avoid boilerplate. Offer advice that would change the module's behavior for the better in the future.
    - Ensure that advice offered to a module M is specific to that M's specific sub-task, not the overall program.
    - Rely on contrasting the behavior of the worse trajectory against the better trajectory in making recommendations.
    - Ensure each unique module name appears exactly once as a key in the advice dictionary.
    """  # noqa: E501  (DSPy's words, kept whole)

    program_code: str = InputField(desc="The code of the program that we are analyzing")
    modules_defn: str = InputField(
        desc="The definition of each module in the program, including its I/O"
    )
    program_inputs: str = InputField(desc="The inputs to the program that we are analyzing")
    oracle_metadata: str = InputField(
        desc="Any (hidden) metadata about the training set instance we're analyzing"
    )
    worse_program_trajectory: str = InputField(
        desc="The trajectory of the program's execution, showing each module's I/O"
    )
    worse_program_outputs: str = InputField(desc="The outputs of the program that we are analyzing")
    worse_reward_value: float = InputField(
        desc="The reward value assigned to the program's outputs"
    )
    worse_reward_info: str = InputField(
        desc="Additional information that might be helpful to understanding the assigned "
        "reward value."
    )
    better_program_trajectory: str = InputField(
        desc="The trajectory of the program's execution, showing each module's I/O"
    )
    better_program_outputs: str = InputField(
        desc="The outputs of the program that we are analyzing"
    )
    better_reward_value: float = InputField(
        desc="The reward value assigned to the program's outputs"
    )
    better_reward_info: str = InputField(
        desc="Additional information that might be helpful to understanding the assigned "
        "reward value."
    )
    module_names: list[str] = InputField(
        desc="The names of the modules in the program, for which we seek advice"
    )
    discussion: str = OutputField(
        desc="Discussing blame of where each module went wrong, if it did"
    )
    module_advice: dict[str, str] = OutputField(
        desc="For each module, describe very concretely: If the module receives "
        "${description of input or patterns therein}, then it should ${description of "
        "content, behavior, or strategies to adopt and/or others to avoid}. Basically, your "
        "advice be such that if the module has access to your tip, it would be much more "
        "likely to act like the successful trajectory rather than the lower-scoring trajectory."
    )


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw of mean ``lam`` from ``rng`` (Knuth's method: ``lam`` here is a
    small demo count over ``max_demos``, so the loop is short)."""
    if lam <= 0:
        return 0
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data; what has no JSON form shows as DSPy's placeholder."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    try:
        data = unstructure(value)
        json.dumps(data)
    except (TypeError, ValueError, RecursionError):
        return f"<non-serializable: {type(value).__name__}>"
    return data


def _text(value: Any) -> str:
    """A value as the rule model reads it: strings as they are, the rest as indented JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(_jsonable(value), indent=2, ensure_ascii=False)


def inspect_modules(program: Module) -> str:
    """Each predictor's name, input and output fields and instructions, as DSPy shows them."""
    separator = "-" * 80
    blocks = [separator]
    for name, predictor in program.named_predictors():
        signature = predictor.signature

        def fields(group: Mapping[str, Any]) -> str:
            return "\n\t\t".join(
                f"{i}. `{n}` ({f.type_name}){': ' + f.desc if f.desc else ''}"
                for i, (n, f) in enumerate(group.items(), start=1)
            )

        blocks.append(
            f"Module {name}\n\n\tInput Fields:\n\t\t{fields(signature.input_fields)}"
            f"\n\tOutput Fields:\n\t\t{fields(signature.output_fields)}"
            f"\n\tOriginal Instructions: " + "\n\t\t".join(signature.instructions.splitlines())
        )
        blocks.append(separator)
    return "\n".join(blocks)


def _source(program: Module) -> str:
    """The program's class source (empty when Python cannot find it)."""
    try:
        return inspect.getsource(type(program))
    except (OSError, TypeError):
        return ""


def append_a_demo(bucket: Sequence[Outcome], program: Module, *, p10: float, maxlen: int) -> bool:
    """Give each predictor the best run's last call to it as a demo, at the end.

    Inputs longer than ``maxlen`` characters are cut, as DSPy does. Returns
    ``False`` (and changes nothing) when the best score is at or below the
    batch's 10th percentile. Raises nothing.
    """
    good = bucket[0]
    if not isinstance(good.score, int | float) or good.score <= p10:
        return False
    demos: dict[str, Example] = {}
    for name, inputs, outputs in good.trace:
        shown = {
            k: str(v)[:maxlen] + TRUNCATED if maxlen and len(str(v)) > maxlen else v
            for k, v in inputs.items()
        }
        demos[name] = Example({**shown, **outputs}, augmented=True)  # the last call wins
    predictors = dict(program.named_predictors())
    for name, demo in demos.items():
        if name in predictors:
            predictors[name].demos.append(demo)
    return True


_UNAVAILABLE: dict[str, Any] = {"N/A": "Prediction not available"}


async def append_a_rule(
    bucket: Sequence[Outcome],
    program: Module,
    *,
    p10: float,
    p90: float,
    prompt_model: BaseLM,
) -> bool:
    """Ask ``prompt_model`` (:class:`OfferFeedback`) to contrast the best and worst runs,
    and append its advice for each predictor to that predictor's instructions.

    Returns ``False`` (and asks nothing) when the best run is at or below the
    batch's 10th percentile or the worst at or above its 90th.

    Raises:
        trio_dspy.errors.LMError: the call failed.
        trio_dspy.errors.AdapterParseError: the answer did not parse.
    """
    good, bad = bucket[0], bucket[-1]
    assert isinstance(good.score, int | float) and isinstance(bad.score, int | float)
    if good.score <= p10 or bad.score >= p90:
        return False
    if good.score <= bad.score:  # every run scored the same: show one side only
        blank = Outcome(good.example, _UNAVAILABLE, [], "N/A", {})
        if good.score > p90:
            bad = blank
        else:
            good = blank
    example = good.example

    def trajectory(outcome: Outcome) -> list[dict[str, Any]]:
        return [
            {"module_name": name, "inputs": inputs, "outputs": outputs}
            for name, inputs, outputs in outcome.trace
        ]

    names = [name for name, _ in program.named_predictors()]
    arguments: dict[str, Any] = {
        "program_code": _source(program),
        "modules_defn": inspect_modules(program),
        "program_inputs": dict(example.inputs()),
        "oracle_metadata": dict(example.labels()),
        "better_program_trajectory": trajectory(good),
        "better_program_outputs": dict(good.prediction or {}),
        "worse_program_trajectory": trajectory(bad),
        "worse_program_outputs": dict(bad.prediction or {}),
        "worse_reward_value": bad.score,
        "better_reward_value": good.score,
        "worse_reward_info": bad.output_metadata,
        "better_reward_info": good.output_metadata,
        "module_names": names,
    }
    arguments = {k: _text(v) for k, v in arguments.items()}
    with context(lm=prompt_model), collect_trace():  # advice is no trace of the program
        advice = (await Predict(OfferFeedback)(**arguments)).module_advice
    for name, predictor in program.named_predictors():
        if name in advice:
            predictor.signature = predictor.signature.with_instructions(
                predictor.signature.instructions + "\n\n" + str(advice[name])
            )
    return True
