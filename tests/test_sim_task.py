"""The instruction-rewarding task: accuracy follows the instructions, and reflection finds them."""

from __future__ import annotations

import json

import attrs
import httpx
import pytest

import trio_dspy as td
from trio_dspy.optimizers.gepa.reflection import extract_instruction, reflection_prompt
from trio_dspy.testing import InstructionTask, SimConfig, serve_sim

TASK = InstructionTask(seed=4)
ITEMS = range(200)


def test_accuracy_grows_with_every_phrase_and_never_falls() -> None:
    said = TASK.instructions
    accuracy = [TASK.accuracy(said, ITEMS)]
    for phrase in TASK.phrases:
        said += f" {phrase}."
        accuracy.append(TASK.accuracy(said, ITEMS))
    assert accuracy == sorted(accuracy)
    assert accuracy[0] == pytest.approx(TASK.base_accuracy, abs=0.08)
    assert accuracy[-1] == 1.0


def test_the_metric_names_the_missing_phrase_only_when_wrong() -> None:
    (example,) = TASK.examples(1, start=7)
    right = TASK.metric(example, td.Prediction(answer=example.answer))
    wrong = TASK.metric(example, td.Prediction(answer="nope"))
    assert (right.score, right.feedback) == (1.0, "Correct.")
    assert wrong.score == 0.0
    assert f'should say "{TASK.phrase(7)}"' in wrong.feedback


def test_reflection_adds_the_phrases_the_feedback_names() -> None:
    records = [
        {
            "Inputs": {"question": "q"},
            "Generated Outputs": {"answer": "x"},
            "Feedback": f'Wrong. The instructions should say "{TASK.phrases[1]}".',
        }
    ]
    body = {"messages": [{"role": "user", "content": reflection_prompt("Be brief.", records)}]}
    reply = TASK.answer(body)
    assert reply is not None and reply.text is not None
    assert extract_instruction(reply.text) == f"Be brief. Also: {TASK.phrases[1]}."


def test_dspy_style_proposals_read_the_json_feedback() -> None:
    feedback = [{"Feedback": f'The instructions should say "{TASK.phrases[2]}".'}]
    user = (
        "[[ ## current_instruction ## ]]\nBe brief.\n\n[[ ## examples_with_feedback ## ]]\n"
        f"{json.dumps(feedback)}\n\nRespond with a JSON object."
    )
    system = "Your output fields are:\n1. `new_instruction` (str): The new instruction."
    body = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}
    reply = TASK.answer(body)
    assert reply is not None and reply.outputs is not None
    assert reply.outputs["new_instruction"] == f"Be brief. Also: {TASK.phrases[2]}."


async def test_over_http_good_instructions_answer_right() -> None:
    examples = TASK.examples(20)
    async with serve_sim(SimConfig(script=TASK.script())) as server:
        lm = td.LM("openai/sim-model", base_url=server.base_url, api_key="k")
        async with lm:
            with td.context(lm=lm):
                plain = td.Predict(td.make_signature("question -> answer"))
                good = td.Predict(
                    td.make_signature("question -> answer", instructions=" ".join(TASK.phrases))
                )
                plain_right = [
                    (await plain(question=e.question)).answer == e.answer for e in examples
                ]
                good_right = [
                    (await good(question=e.question)).answer == e.answer for e in examples
                ]
    assert all(good_right)
    assert sum(plain_right) == sum(TASK.lucky(i) for i in range(20))


def test_simba_advice_names_the_fed_back_phrases_for_each_listed_module() -> None:
    info = json.dumps({"feedback": f'Wrong. The instructions should say "{TASK.phrases[3]}".'})
    user = (
        f"[[ ## worse_reward_info ## ]]\n{info}\n\n"
        '[[ ## module_names ## ]]\n[\n  "first",\n  "second"\n]\n\nRespond with the fields.'
    )
    system = "Your output fields are:\n1. `discussion` (str)\n2. `module_advice` (dict[str, str])"
    body = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}
    reply = TASK.answer(body)
    assert reply is not None and reply.outputs is not None
    advice = reply.outputs["module_advice"]
    assert set(advice) == {"first", "second"}
    assert all(TASK.phrases[3] in text for text in advice.values())
    # Nothing fed back: no advice.
    quiet = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": "?"}]}
    reply = TASK.answer(quiet)
    assert reply is not None and reply.outputs is not None
    assert reply.outputs["module_advice"] == {}


def test_sampling_luck_varies_sampled_answers_by_rollout_only() -> None:
    lucky = InstructionTask(seed=4, sampling_luck=0.5)
    missed = [i for i in range(40) if not lucky.lucky(i)]
    system = {"role": "system", "content": "Answer."}

    def right(task: InstructionTask, item: int, temperature: float | None) -> bool:
        body: dict[str, object] = {
            "messages": [system, {"role": "user", "content": task.question(item)}]
        }
        if temperature is not None:
            body["temperature"] = temperature
        reply = task.answer(body)
        assert reply is not None and reply.outputs is not None
        return bool(reply.outputs["answer"] == task.code(item))

    # Unsampled requests, and every request of a task without luck, answer as before.
    assert not any(right(lucky, i, None) or right(lucky, i, 0.0) for i in missed)
    assert not any(right(TASK, i, 1.0) for i in range(40) if not TASK.lucky(i))
    sampled = [right(lucky, i, 1.0) for i in missed]
    assert 0 < sum(sampled) < len(missed)
    with pytest.raises(ValueError, match="sampling_luck"):
        InstructionTask(sampling_luck=1.5)


async def test_in_process_rollouts_sample_apart() -> None:
    lucky = InstructionTask(seed=4, sampling_luck=0.5)
    lm = lucky.dummy_lm()
    item = next(i for i in range(40) if not lucky.lucky(i))
    predict = td.Predict(td.make_signature("question -> answer"))
    answers = set()
    with td.context(lm=lm):
        for rollout in range(8):
            request = td.ChatAdapter().format_request(
                predict.signature, [], {"question": lucky.question(item)}, params={}
            )
            request = attrs.evolve(request, params={"temperature": 1.0}, rollout_id=rollout)
            answers.add((await lm.request(request)).text)
    assert len(answers) == 2  # right for some rollouts, wrong for others


# DSPy 3.4.1's GEPA proposer (``ProposeInstruction`` through ``JSONAdapter().format``), as sent
# to a model litellm does not know: no ``response_format``, the JSON asked for in the prompt only.
DSPY_PROPOSE_SYSTEM = (
    "Your input fields are:\n"
    "1. `current_instruction` (str): The instructions I provided to the assistant.\n"
    "2. `examples_with_feedback` (list[dict[str, Any]]): Task inputs provided to the assistant, the assistant's response for each, and feedback on how the response could be better.\n"
    "Your output fields are:\n"
    "1. `new_instruction` (str): The new instruction for the assistant.\n"
    "All interactions will be structured in the following way, with the appropriate values filled in.\n"
    "\n"
    "Inputs will have the following structure:\n"
    "\n"
    "[[ ## current_instruction ## ]]\n"
    "{current_instruction}\n"
    "\n"
    "[[ ## examples_with_feedback ## ]]\n"
    "{examples_with_feedback}\n"
    "\n"
    "Outputs will be a JSON object with the following fields.\n"
    "\n"
    "{\n"
    '  "new_instruction": "{new_instruction}"\n'
    "}\n"
    "In adhering to this structure, your objective is: \n"
    "        I provided an assistant with instructions to perform a task for me. You are given those instructions, along with examples of different task inputs provided to the assistant, the assistant's response for each of them, and some feedback on how the assistant's response could be better.\n"
    "        \n"
    "        Your task is to write a new instruction for the assistant.\n"
    "        \n"
    "        Read the inputs carefully and identify the input format and infer detailed task description about the task I wish to solve with the assistant.\n"
    "        \n"
    "        Read all the assistant responses and the corresponding feedback. Identify all niche and domain specific factual information about the task and include it in the instruction, as a lot of it may not be available to the assistant in the future. The assistant may have utilized a generalizable strategy to solve the task, if so, include that in the instruction as well."
)
DSPY_PROPOSE_USER = (
    "[[ ## current_instruction ## ]]\n"
    "Be brief.\n"
    "\n"
    "[[ ## examples_with_feedback ## ]]\n"
    '[{"Inputs": {"question": "Item 7: which shelf code?"}, "Generated Outputs": {"answer": "B-1234"}, "Feedback": "Wrong: the shelf code is C-2345, not B-1234. The instructions should say \\"answer with the code alone\\"."}]\n'
    "\n"
    "Respond with a JSON object in the following order of fields: `new_instruction`."
)


async def test_dspy_gepa_proposals_come_back_as_the_json_its_adapter_parses() -> None:
    body = {
        "model": "sim-model",
        "messages": [
            {"role": "system", "content": DSPY_PROPOSE_SYSTEM},
            {"role": "user", "content": DSPY_PROPOSE_USER},
        ],
    }
    async with serve_sim(SimConfig(script=TASK.script())) as server, httpx.AsyncClient() as client:
        reply = await client.post(f"{server.base_url}/chat/completions", json=body)
    text = reply.json()["choices"][0]["message"]["content"]
    assert json.loads(text) == {"new_instruction": f"Be brief. Also: {TASK.phrases[3]}."}
