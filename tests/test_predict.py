from __future__ import annotations

import pytest
import trio

import trio_dspy as td
from trio_dspy.errors import AdapterParseError, ConfigurationError
from trio_dspy.testing import DummyLM

from .story import Drink, HandleCustomer, MakeDrink, Mood, Refund, Size

ANSWER = {"action": MakeDrink(Drink("latte", Size.large, "oat")), "confidence": 0.8}


@pytest.mark.parametrize("adapter", [td.ChatAdapter(), td.JSONAdapter()], ids=["chat", "json"])
async def test_typed_signature_round_trip_through_each_adapter(adapter: td.Adapter) -> None:
    lm = DummyLM([ANSWER])
    with td.context(lm=lm, adapter=adapter):
        pred = await td.Predict(HandleCustomer)(request="latte please", mood=Mood.happy)
    assert isinstance(pred, td.Prediction)
    assert pred.action == MakeDrink(Drink("latte", Size.large, "oat"))
    assert isinstance(pred.confidence, float)
    assert pred.confidence == 0.8
    assert dict(pred) == ANSWER
    assert pred.usage.total_tokens > 0
    sent = lm.requests[0]
    expected_format = adapter.response_format(HandleCustomer)
    assert sent.response_format == expected_format


async def test_union_member_refund_through_json_adapter() -> None:
    lm = DummyLM(
        ['{"action": {"_type": "Refund", "order_id": "B2", "amount": 5}, "confidence": 1}']
    )
    with td.context(lm=lm, adapter=td.JSONAdapter()):
        pred = await td.Predict(HandleCustomer)(request="terrible!", mood=Mood.upset)
    assert pred.action == Refund("B2", 5.0)


async def test_malformed_completions_are_retried_with_the_error_then_raise() -> None:
    garbage = ["I'd make a latte.", "Still not sure.", "[[ ## action ## ]]\nlatte"]
    lm = DummyLM(garbage)
    no_fallback = td.ChatAdapter(use_json_adapter_fallback=False)
    with td.context(lm=lm, adapter=no_fallback), pytest.raises(AdapterParseError) as info:
        await td.Predict(HandleCustomer)(request="latte", mood=Mood.happy)
    # One call plus max_parse_retries (2) re-asks, each showing the model its error.
    assert len(lm.requests) == 3
    assert info.value.completion == garbage[-1]
    assert info.value.attempts == 3
    last = lm.requests[-1].messages
    assert [m.role for m in last[-4:]] == ["assistant", "user", "assistant", "user"]
    assert last[-2].content == garbage[1]
    assert "could not be used: missing output field(s) action, confidence" in last[-3].content
    assert "Respond with the corresponding output fields" in last[-1].content


async def test_a_retry_that_parses_succeeds() -> None:
    lm = DummyLM(["no idea", ANSWER])
    with td.context(lm=lm):
        pred = await td.Predict(HandleCustomer)(request="latte", mood=Mood.happy)
    assert pred.confidence == 0.8
    assert len(lm.requests) == 2
    # Usage of the prediction covers both calls.
    total = sum(1 for _ in lm.history)
    assert total == 2
    assert pred.usage.total_tokens == sum(h.response.usage.total_tokens for h in lm.history)


async def test_max_parse_retries_setting_is_honoured() -> None:
    lm = DummyLM(["x"], cycle=True)
    with td.context(lm=lm, max_parse_retries=0), pytest.raises(AdapterParseError):
        await td.Predict(HandleCustomer)(request="latte", mood=Mood.happy)
    assert len(lm.requests) == 1


async def test_truncated_completion_says_so() -> None:
    cut = td.LMResponse(text="[[ ## action ## ]]\n{", finish_reason="length")
    lm = DummyLM([cut])
    with td.context(lm=lm, max_parse_retries=0), pytest.raises(AdapterParseError, match="cut off"):
        await td.Predict(HandleCustomer)(request="latte", mood=Mood.happy)


async def test_missing_and_unknown_inputs_raise_type_error_naming_them() -> None:
    predict = td.Predict(HandleCustomer)
    with td.context(lm=DummyLM([ANSWER])):
        with pytest.raises(TypeError, match="missing required input field.*mood"):
            await predict(request="hi")
        with pytest.raises(TypeError, match="unknown input field.*colour"):
            await predict(request="hi", mood=Mood.happy, colour="red")


async def test_a_misspelt_input_is_named_with_its_likely_spelling() -> None:
    predict = td.Predict(HandleCustomer)
    with td.context(lm=DummyLM([ANSWER])), pytest.raises(TypeError) as info:
        await predict(reqest="hi", mood=Mood.happy)
    message = str(info.value)
    assert "unknown input field(s) reqest (did you mean request?)" in message
    assert "missing required input field(s): request" in message


async def test_no_lm_configured_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="no language model configured"):
        await td.Predict("q -> a")(q="?")


async def test_lm_kwargs_flow_from_settings_and_predictor() -> None:
    lm = DummyLM([{"a": "x"}, {"a": "y"}], max_tokens=100)
    predict = td.Predict("q -> a", temperature=0.2)
    with td.context(lm=lm, lm_kwargs={"temperature": 0.9, "top_p": 0.5}):
        await predict(q="?")
    params = lm.history[-1].request.params
    assert params == {"max_tokens": 100, "temperature": 0.2, "top_p": 0.5}


async def test_chain_of_thought_adds_reasoning_first() -> None:
    lm = DummyLM([{"reasoning": "They want a latte.", **ANSWER}])
    cot = td.ChainOfThought(HandleCustomer)
    assert list(cot.signature.output_fields) == ["reasoning", "action", "confidence"]
    with td.context(lm=lm):
        pred = await cot(request="latte", mood=Mood.happy)
    assert pred.reasoning == "They want a latte."
    assert pred.action.drink.size is Size.large
    assert (
        "`[[ ## reasoning ## ]]`, then `[[ ## action ## ]]`" in lm.requests[0].messages[-1].content
    )


async def test_dummy_lm_latency_is_virtual_under_autojump(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lm = DummyLM([{"a": "1"}] * 4, latency=5.0)
    predict = td.Predict("q -> a")
    start = trio.current_time()
    with td.context(lm=lm):
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(lambda: predict(q="?"))
    assert trio.current_time() - start == pytest.approx(5.0)


async def test_dummy_lm_dict_script_and_exhaustion() -> None:
    lm = DummyLM({"latte": {"a": "coffee"}, "burger": {"a": "no burgers"}})
    predict = td.Predict("q -> a")
    with td.context(lm=lm):
        assert (await predict(q="a burger please")).a == "no burgers"
        assert (await predict(q="latte")).a == "coffee"
        with pytest.raises(ConfigurationError, match="no answer for this request"):
            await predict(q="tea")
    once = DummyLM([{"a": "x"}])
    with td.context(lm=once):
        await predict(q="?")
        with pytest.raises(ConfigurationError, match="ran out of scripted answers"):
            await predict(q="?")


def test_chain_of_thought_moves_a_declared_reasoning_output_first_as_dspy_does() -> None:
    class Answer(td.Signature):
        """Answer."""

        question: str = td.InputField()
        answer: str = td.OutputField()
        reasoning: str = td.OutputField(desc="why, briefly")

    cot = td.ChainOfThought(Answer)
    assert list(cot.signature.output_fields) == ["reasoning", "answer"]
    assert cot.signature.output_fields["reasoning"].desc == "why, briefly"


async def test_a_predictor_prompts_what_its_signature_and_demos_are_at_each_call() -> None:
    lm = DummyLM([{"answer": "4"}], cycle=True)
    qa = td.Predict("question -> answer")
    qa.lm = lm
    await qa(question="2+2?")
    qa.signature.instructions = "Answer with a number."
    qa.demos.append(td.Example(question="1+1?", answer="2"))
    await qa(question="2+2?")
    qa.demos[0] = td.Example(question="3+3?", answer="6")
    await qa(question="2+2?")
    first, second, third = (r.messages for r in lm.requests)
    assert "Answer with a number." not in first[0].text
    assert "Answer with a number." in second[0].text
    assert [m.role for m in second] == ["system", "user", "assistant", "user"]
    assert "1+1?" in second[1].text
    assert "3+3?" in third[1].text and "1+1?" not in third[1].text


async def test_a_predictions_usage_is_its_own_and_leaves_the_answers_untouched() -> None:
    lm = DummyLM(["no idea", ANSWER])
    with td.context(lm=lm):
        pred = await td.Predict(HandleCustomer)(request="latte", mood=Mood.happy)
    first, second = (h.response.usage for h in lm.history)
    before = (first.total_tokens, first.requests, first.cost)
    assert pred.usage.total_tokens == first.total_tokens + second.total_tokens
    assert pred.usage is not first
    pred.usage.add(td.Usage(prompt_tokens=5, total_tokens=5, requests=1))
    assert (first.total_tokens, first.requests, first.cost) == before  # the answer's own counts
