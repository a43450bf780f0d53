"""td.TwoStepAdapter: the main model answers freely, a second model extracts the fields."""

from __future__ import annotations

import enum
from typing import Any

import pytest

import trio_dspy as td
from trio_dspy.errors import AdapterParseError, LMServerError
from trio_dspy.messages import LMRequest
from trio_dspy.testing import DummyLM, SimConfig, keyword_script, serve_sim


class Verdict(enum.Enum):
    yes = "yes"
    no = "no"


class Judge(td.Signature):
    """Decide whether the claim holds."""

    claim: str = td.InputField(desc="what to check")
    facts: list[str] = td.InputField()
    verdict: Verdict = td.OutputField(desc="the decision")
    confidence: float = td.OutputField()


FREE = "Having weighed it all, the claim holds (verdict yes), and I am fairly sure: 0.8."


def test_the_main_prompt_is_dspy_s_free_form_wording() -> None:
    adapter = td.TwoStepAdapter(DummyLM([]))
    messages = adapter.format(Judge, [], {"claim": "sky is blue", "facts": ["a", "b"]})
    assert [m.role for m in messages] == ["system", "user"]
    assert messages[0].content == (
        "You are a helpful assistant that can solve tasks based on user input.\n"
        "As input, you will be provided with:\n1. `claim` (str): what to check\n"
        "2. `facts` (list[str])\n"
        "Your outputs must contain:\n1. `verdict` (Verdict): the decision\n"
        "2. `confidence` (float)\n"
        "You should lay out your outputs in detail so that your answer can be understood by "
        "another agent\n"
        "Specific instructions: Decide whether the claim holds."
    )
    # Plain "name: value" lines and no format to keep to.
    assert messages[1].content == 'claim: sky is blue\n\nfacts: ["a", "b"]'
    request = adapter.format_request(Judge, [], {"claim": "x", "facts": []})
    assert request.response_format is None


def test_demos_are_plain_name_value_turns() -> None:
    adapter = td.TwoStepAdapter(DummyLM([]))
    demo = {"claim": "c", "facts": [], "verdict": Verdict.no, "confidence": 0.5}
    messages = adapter.format(Judge, [demo], {"claim": "x", "facts": []})
    assert messages[2].role == "assistant"
    assert messages[2].content == "verdict: no\n\nconfidence: 0.5"


def test_the_extraction_request_is_a_chat_request_of_text_to_the_outputs() -> None:
    adapter = td.TwoStepAdapter(DummyLM([]))
    extraction = adapter.extraction(Judge)
    assert extraction.lm is adapter.extraction_model
    assert isinstance(extraction.adapter, td.ChatAdapter)
    assert list(extraction.signature.input_fields) == ["text"]
    assert list(extraction.signature.output_fields) == ["verdict", "confidence"]
    assert extraction.signature.output_fields["verdict"].desc == "the decision"
    assert extraction.signature.instructions.startswith(
        "The input is a text that should contain all the necessary information to produce "
        "the fields `verdict`, `confidence`. Your job is to extract the fields from the text "
        "verbatim."
    )
    assert adapter.extraction(Judge) is extraction  # built once per signature


def test_an_output_named_text_moves_the_extraction_input_aside() -> None:
    extraction = td.TwoStepAdapter(DummyLM([])).extraction(td.make_signature("q -> text"))
    assert extraction.field == "source_text"
    assert list(extraction.signature.input_fields) == ["source_text"]


def test_the_extraction_model_must_be_a_base_lm() -> None:
    with pytest.raises(TypeError, match="BaseLM"):
        td.TwoStepAdapter("openai/gpt-4o-mini")  # type: ignore[arg-type]


async def test_two_dummy_models_one_answers_the_other_extracts() -> None:
    main = DummyLM([FREE])
    extractor = DummyLM([{"verdict": "yes", "confidence": 0.8}])
    with td.context(lm=main, adapter=td.TwoStepAdapter(extractor)):
        pred = await td.Predict(Judge)(claim="sky is blue", facts=["it is"])
    assert pred.verdict is Verdict.yes
    assert pred.confidence == 0.8
    assert len(main.requests) == 1 and len(extractor.requests) == 1
    last = extractor.requests[0].messages[-1].content
    assert isinstance(last, str)
    assert f"[[ ## text ## ]]\n{FREE}" in last


async def test_the_extraction_is_re_asked_in_structured_mode_when_it_does_not_parse() -> None:
    main = DummyLM([FREE])
    extractor = DummyLM(["no sections at all", '{"verdict": "yes", "confidence": 0.8}'])
    with td.context(lm=main, adapter=td.TwoStepAdapter(extractor)):
        pred = await td.Predict(Judge)(claim="c", facts=[])
    assert pred.verdict is Verdict.yes
    assert len(main.requests) == 1  # the free answer is not asked for again
    assert [r.response_format is not None for r in extractor.requests] == [False, True]


async def test_an_extraction_that_never_parses_fails_with_the_free_answer() -> None:
    main = DummyLM([FREE])
    extractor = DummyLM(["nothing useful"], cycle=True)
    adapter = td.TwoStepAdapter(extractor)
    with (
        td.context(lm=main, adapter=adapter),
        pytest.raises(AdapterParseError, match="extraction model's answer") as info,
    ):
        await td.Predict(Judge)(claim="c", facts=[])
    assert info.value.completion == FREE
    assert info.value.adapter == "TwoStepAdapter"
    assert isinstance(info.value.__cause__, AdapterParseError)
    assert len(main.requests) == 1


async def test_an_extraction_model_error_is_not_a_parse_error() -> None:
    def fail(request: LMRequest) -> Any:
        raise LMServerError("down")

    main = DummyLM([FREE])
    adapter = td.TwoStepAdapter(DummyLM(fail))
    with td.context(lm=main, adapter=adapter), pytest.raises(LMServerError):
        await td.Predict(Judge)(claim="c", facts=[])


async def test_each_of_n_completions_is_extracted_on_its_own() -> None:
    answers = ["First: yes at 0.1.", "Second: no at 0.2."]
    main = DummyLM(answers)
    extractor = DummyLM(
        {
            "First": {"verdict": "yes", "confidence": 0.1},
            "Second": {"verdict": "no", "confidence": 0.2},
        }
    )
    with td.context(lm=main, adapter=td.TwoStepAdapter(extractor)):
        pred = await td.Predict(Judge, n=2)(claim="c", facts=[])
    assert sorted(c["confidence"] for c in pred.completions) == [0.1, 0.2]
    assert len(extractor.requests) == 2


async def test_configure_takes_the_two_step_adapter_and_streamify_sends_the_fields() -> None:
    main = DummyLM([FREE], stream_chunk=5)
    extractor = DummyLM([{"verdict": "yes", "confidence": 0.8}])
    td.configure(lm=main, adapter=td.TwoStepAdapter(extractor))
    program = td.streamify(td.Predict("claim -> reason, verdict: bool"))
    extractor.answers = [{"reason": "it holds", "verdict": True}]
    items = []
    async with program(claim="c") as stream:
        async for item in stream:
            items.append(item)
    chunks = [i for i in items if isinstance(i, td.StreamResponse)]
    assert "".join(c.chunk for c in chunks if c.field == "reason") == "it holds"
    assert isinstance(items[-1], td.Prediction)
    assert items[-1].verdict is True


async def test_two_models_on_the_simulated_server_one_request_each() -> None:
    # The main model answers in prose (the free-form prompt names no format);
    # the extraction model gets a chat request holding that prose.
    script = keyword_script({"The claim": "Verdict: yes. Confidence: 0.9."})
    async with serve_sim(SimConfig(script=script)) as sim:
        main = td.LM("openai/big-model", base_url=sim.base_url, api_key="k")
        small = td.LM("openai/small-model", base_url=sim.base_url, api_key="k")
        async with main, small:
            with td.context(lm=main, adapter=td.TwoStepAdapter(small)):
                pred = await td.Predict(Judge)(claim="The claim", facts=["x"])
        bodies = list(sim.requests)
    assert [b["model"] for b in bodies] == ["big-model", "small-model"]
    assert "You are a helpful assistant" in bodies[0]["messages"][0]["content"]
    extraction = bodies[1]["messages"][-1]["content"]
    assert "[[ ## text ## ]]\nVerdict: yes. Confidence: 0.9." in extraction
    assert isinstance(pred.verdict, Verdict)
    assert isinstance(pred.confidence, float)


async def test_the_simulated_server_answers_the_free_prompt_in_prose() -> None:
    async with serve_sim(SimConfig()) as sim:
        main = td.LM("openai/big-model", base_url=sim.base_url, api_key="k")
        small = td.LM("openai/small-model", base_url=sim.base_url, api_key="k")
        async with main, small:
            with td.context(lm=main, adapter=td.TwoStepAdapter(small)):
                pred = await td.Predict(Judge)(claim="c", facts=[])
        bodies = list(sim.requests)
    assert len(bodies) == 2
    extraction = bodies[1]["messages"][-1]["content"]
    free = extraction.split("[[ ## text ## ]]\n", 1)[1].split("\n\n", 1)[0]
    assert free and "[[ ##" not in free  # a few words of prose
    assert isinstance(pred.verdict, Verdict)


async def test_refine_passes_its_hint_to_the_main_model_and_still_extracts() -> None:
    main = DummyLM(["It is Paris, France.", "Paris."])
    extractor = DummyLM(
        {"Paris, France": {"answer": "Paris, France"}, "Paris.": {"answer": "Paris"}}
    )

    def one_word(inputs: dict[str, Any], pred: td.Prediction) -> float:
        return float(" " not in pred.answer)

    refine = td.Refine(td.Predict("question -> answer"), 3, one_word, threshold=1.0)
    with td.context(lm=main, adapter=td.TwoStepAdapter(extractor)):
        pred = await refine(question="Capital of France?")
    assert pred.answer == "Paris"
    assert len(main.requests) == 2 and len(extractor.requests) == 2
    hint = main.requests[1].messages[-1].content
    assert isinstance(hint, str) and hint.startswith("question: Capital of France?\n\nhint_: ")
