"""DSPy's names and call shapes, and the mistakes a DSPy habit makes here."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import trio_dspy as td
from trio_dspy.testing import DummyLM


class Pipeline(td.Module):
    """Two steps, the second fed the first's answer."""

    def __init__(self) -> None:
        self.draft = td.Predict("question -> answer")
        self.polish = td.Predict("answer -> final")

    async def forward(self, question: str) -> td.Prediction:
        draft = await self.draft(question=question)
        return await self.polish(answer=draft.answer)


class AsyncOnly(td.Module):
    """DSPy's spelling: only ``aforward`` is defined."""

    def __init__(self) -> None:
        self.qa = td.Predict("question -> answer")

    async def aforward(self, question: str) -> td.Prediction:
        return await self.qa(question=question)


# ------------------------------------------------------------------ acall, aforward
async def test_acall_is_the_same_call_as_await_module() -> None:
    qa = td.Predict("question -> answer")
    with td.context(lm=DummyLM([{"answer": "4"}, {"answer": "4"}])):
        assert (await qa.acall(question="2+2?")).answer == "4"
        assert (await qa(question="2+2?")).answer == "4"


async def test_a_module_defining_only_aforward_is_called_through_it() -> None:
    program = AsyncOnly()
    with td.context(lm=DummyLM([{"answer": "Paris"}, {"answer": "Rome"}])):
        assert (await program(question="France?")).answer == "Paris"
        assert (await program.acall(question="Italy?")).answer == "Rome"


async def test_aforward_of_a_forward_module_runs_forward() -> None:
    with td.context(lm=DummyLM([{"answer": "a"}, {"final": "b"}])):
        assert (await Pipeline().aforward(question="q")).final == "b"


async def test_a_module_with_neither_forward_nor_aforward_says_to_define_one() -> None:
    class Empty(td.Module):
        pass

    with pytest.raises(NotImplementedError, match="async def forward"):
        await Empty()()


# --------------------------------------------------------------- forgotten awaits
async def test_reading_a_field_of_an_unawaited_call_says_to_await() -> None:
    qa = td.Predict("question -> answer")
    call: Any = qa(question="2+2?")
    with pytest.raises(AttributeError, match=r"cannot read \.answer.*`await`.*td\.run"):
        call.answer  # noqa: B018
    with pytest.raises(TypeError, match="await"):
        call["answer"]
    call.close()


async def test_an_unawaited_call_is_still_awaitable_and_a_trio_coroutine() -> None:
    qa = td.Predict("question -> answer")
    with td.context(lm=DummyLM([{"answer": "1"}, {"answer": "2"}])):
        assert (await qa(question="q")).answer == "1"
        results: list[Any] = []

        async def keep() -> None:
            results.append(await qa(question="q"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep)
    assert results[0].answer == "2"


def test_td_run_takes_a_module_and_its_inputs() -> None:
    qa = td.Predict("question -> answer")
    with td.context(lm=DummyLM([{"answer": "ok"}])):
        assert td.run(qa, question="q").answer == "ok"


async def test_a_forgotten_await_inside_forward_names_the_field_and_says_to_await() -> None:
    class Forgetful(td.Module):
        def __init__(self) -> None:
            self.draft = td.Predict("question -> answer")
            self.polish = td.Predict("draft -> answer")

        async def forward(self, question: str) -> td.Prediction:
            draft = self.draft(question=question)  # the missing await
            return await self.polish(draft=draft)

    with (
        td.context(lm=DummyLM([{"answer": "x"}])),
        pytest.raises(TypeError, match=r"input field 'draft'.*un-awaited.*`await`"),
    ):
        await Forgetful()(question="q")


async def test_returning_an_unawaited_call_from_forward_says_to_await_it() -> None:
    class Forgetful(td.Module):
        def __init__(self) -> None:
            self.qa = td.Predict("question -> answer")

        async def forward(self, question: str) -> Any:
            return self.qa(question=question)

    with pytest.raises(TypeError, match=r"Forgetful\.forward returned.*`await`"):
        await Forgetful()(question="q")


async def test_a_plain_def_forward_says_to_write_async_def() -> None:
    class Sync(td.Module):
        def forward(self, question: str) -> Any:
            return td.Prediction(answer=question)

    with pytest.raises(TypeError, match="async def forward"):
        await Sync()(question="q")


# ----------------------------------------------------------------- positional args
def test_a_positional_argument_names_the_input_fields() -> None:
    qa = td.Predict("question, context -> answer")
    with pytest.raises(TypeError, match=r"Positional.*'question, context'.*question=input_value"):
        qa("What is 2+2?")  # type: ignore[call-arg, unused-coroutine]
    with pytest.raises(TypeError, match=r"Positional.*'question'.*question=input_value"):
        Pipeline()("What is 2+2?", "more")  # type: ignore[call-arg, unused-coroutine]


async def test_a_modules_forward_takes_positional_arguments_as_in_dspy() -> None:
    # DSPy passes them on (a SemanticF1 metric is called `metric(example, pred)`);
    # only a predictor, whose inputs are its signature's, refuses them.
    with td.context(lm=DummyLM([{"answer": "4"}, {"final": "four"}])):
        pred = await Pipeline()("What is 2+2?")  # type: ignore[call-arg]
    assert pred.final == "four"
    with pytest.raises(TypeError, match="question both by position and by keyword"):
        Pipeline()("a", question="b")  # type: ignore[call-arg, unused-coroutine]


# ------------------------------------------------------------ num_threads, Evaluate
def exact(example: td.Example, pred: td.Prediction, trace: Any = None) -> bool:
    return bool(example.answer == pred.answer)


async def metric(example: Any, pred: Any, trace: Any = None) -> float:
    return 1.0


DEVSET = [td.Example(question=f"q{i}", answer="a").with_inputs("question") for i in range(3)]


async def test_batch_takes_num_threads_as_a_deprecated_limit() -> None:
    qa = td.Predict("question -> answer")
    with (
        td.context(lm=DummyLM([{"answer": "a"}], cycle=True)),
        pytest.warns(DeprecationWarning, match=r"Module\.batch\(num_threads=\.\.\.\).*limit=2"),
    ):
        results = await qa.batch([{"question": "q"}] * 3, num_threads=2)
    assert [r.answer for r in results] == ["a"] * 3


async def test_evaluate_takes_dspys_keywords(capsys: pytest.CaptureFixture[str]) -> None:
    qa = td.Predict("question -> answer")
    with pytest.warns(DeprecationWarning) as record:
        evaluate = td.Evaluate(
            devset=DEVSET, metric=exact, num_threads=2, display_progress=False, display_table=2
        )
    assert {str(w.message).split(":")[1].strip() for w in record} == {
        "write limit=2 (calls run as trio child tasks, not threads)",
        "write progress=False",
    }
    assert evaluate.limit == 2 and evaluate.progress is False
    with td.context(lm=DummyLM([{"answer": "a"}], cycle=True)):
        result = await evaluate(qa)
    assert result.score == 100.0
    table = capsys.readouterr().out
    assert "... 1 more" in table and "score 100.00%" in table


async def test_evaluate_prints_no_table_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    qa = td.Predict("question -> answer")
    with td.context(lm=DummyLM([{"answer": "a"}], cycle=True)):
        await td.Evaluate(DEVSET, exact, progress=False)(qa)
    assert capsys.readouterr().out == ""


def test_dspy_evaluate_keywords_without_a_counterpart_say_what_to_write() -> None:
    with pytest.raises(TypeError, match=r"save_as_csv=: call result\.to_csv\(path\)"):
        td.Evaluate(DEVSET, exact, save_as_csv="out.csv")
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        td.Evaluate(DEVSET, exact, colour="red")


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: td.BootstrapFewShotWithRandomSearch(metric, **kw),
        lambda **kw: td.GEPA(metric, reflection_lm=DummyLM([]), auto="light", **kw),
        lambda **kw: td.MIPROv2(metric, **kw),
        lambda **kw: td.SIMBA(metric, **kw),
    ],
    ids=["random_search", "gepa", "mipro", "simba"],
)
def test_optimizers_take_num_threads_as_a_deprecated_limit(make: Any) -> None:
    with pytest.warns(DeprecationWarning, match="limit=3"):
        optimizer = make(num_threads=3)
    assert optimizer.limit == 3
    with pytest.raises(TypeError, match="give limit= only"):
        make(num_threads=3, limit=4)


# ------------------------------------------------------------------- other names
async def test_tool_acall_takes_keywords_as_dspy_does() -> None:
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    tool = td.Tool(add)
    assert await tool.acall(a=1, b=2) == 3
    assert await tool.acall({"a": 1, "b": 2}) == 3
    with pytest.raises(TypeError, match="not both"):
        await tool.acall({"a": 1}, b=2)


def test_example_to_dict_has_dspys_spelling() -> None:
    example = td.Example(question="q", answer="a").with_inputs("question")
    assert example.toDict() == {"question": "q", "answer": "a"} == example.to_dict()


async def test_td_settings_lm_reads_the_model_in_force() -> None:
    def lm_now() -> Any:
        return td.settings.lm  # the module, read as DSPy reads dspy.settings

    lm = DummyLM([])
    assert lm_now() is None
    with td.context(lm=lm):
        assert lm_now() is lm
    with pytest.raises(AttributeError, match="settings are adapter, "):
        td.settings.colour  # noqa: B018


def test_dspy_settings_say_what_to_use_here() -> None:
    with pytest.raises(TypeError, match=r"track_usage is a DSPy setting.*td\.track_usage\(\)"):
        td.configure(track_usage=True)
    with (
        pytest.raises(TypeError, match="num_threads is a DSPy setting.*limit="),
        td.context(num_threads=8),
    ):
        pass


async def test_lm_inspect_history_prints_that_models_calls(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lm = DummyLM([{"answer": "Paris"}])
    with td.context(lm=lm):
        await td.Predict("question -> answer")(question="Capital of France?")
    lm.inspect_history(n=1)
    assert "Capital of France?" in capsys.readouterr().out


# ------------------------------------------------------- more first mistakes
async def test_iterating_a_streamed_call_without_async_with_says_to_use_it() -> None:
    stream_program = td.streamify(td.Predict("question -> answer"))
    call: Any = stream_program(question="q")
    with pytest.raises(TypeError, match=r"async with stream_program\(\*\*inputs\) as stream"):
        async for _ in call:
            pass


async def test_a_streamed_call_still_works_with_async_with() -> None:
    stream_program = td.streamify(td.Predict("question -> answer"))
    with td.context(lm=DummyLM([{"answer": "yes"}], stream_chunk=1)):
        async with stream_program(question="q") as stream:
            items = [item async for item in stream]
    assert isinstance(items[-1], td.Prediction) and items[-1].answer == "yes"


def test_dspy_types_in_a_string_signature_say_what_to_write() -> None:
    with pytest.raises(td.errors.SignatureError, match=r"'dspy\.Image'.*write 'Image' \(or 'td"):
        td.Predict("image: dspy.Image -> caption")
    with pytest.raises(td.errors.SignatureError, match=r"'dspy\.Thing'.*custom_types"):
        td.Predict("x: dspy.Thing -> y")
    assert td.Predict("image: td.Image -> caption").signature.input_fields["image"].annotation is (
        td.Image
    )


def test_save_to_a_directory_says_a_file_path_is_needed(tmp_path: Any) -> None:
    with pytest.raises(IsADirectoryError, match=r"file path such as <dir>/program\.json"):
        td.Predict("q -> a").save(f"{tmp_path}/")
    with pytest.raises(IsADirectoryError, match="not a directory"):
        td.Predict("q -> a").save(tmp_path)
    with pytest.raises(FileNotFoundError, match="no directory .*missing"):
        td.Predict("q -> a").save(tmp_path / "missing" / "p.json")
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_pickles_are_refused_with_the_json_alternative(tmp_path: Any) -> None:
    with pytest.raises(td.errors.TrioDSPyError, match=r"never a pickle.*give a \.json path"):
        td.Predict("q -> a").save(tmp_path / "program.pkl")
    with pytest.raises(td.errors.TrioDSPyError, match="save_program=True.*JSON"):
        td.Predict("q -> a").save(tmp_path / "program.json", save_program=True)
    (tmp_path / "old.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(
        td.errors.TrioDSPyError, match=r"never read.*program\.save\('program\.json'\)"
    ):
        td.Predict("q -> a").load(tmp_path / "old.pkl")
    assert [p.name for p in tmp_path.iterdir()] == ["old.pkl"]


def test_the_signature_of_td_lm_shows_its_parameters() -> None:
    import inspect

    params = inspect.signature(td.LM).parameters
    assert list(params)[:3] == ["model", "base_url", "api_key"]
    assert "self" not in params and "args" not in params


async def test_batch_calls_an_example_with_its_inputs_as_dspy_does() -> None:
    qa = td.Predict("question -> answer")
    with td.context(lm=DummyLM([{"answer": "a"}], cycle=True)):
        results = await qa.batch(DEVSET)  # answer is a label, not an input
    assert [r.answer for r in results] == ["a"] * 3


async def test_dspy_batch_keywords_without_a_counterpart_say_what_to_write() -> None:
    qa = td.Predict("question -> answer")
    with pytest.raises(TypeError, match=r"max_errors=: use return_exceptions=True"):
        await qa.batch(DEVSET, max_errors=3)


def test_dspy_predictor_keywords_are_not_sent_to_the_model() -> None:
    with pytest.raises(TypeError, match=r"td\.Predict does not take DSPy's callbacks=: observe"):
        td.Predict("question -> answer", callbacks=[])
    with pytest.raises(TypeError, match=r"td\.ChainOfThought .*rationale_field=: the reasoning"):
        td.ChainOfThought("question -> answer", rationale_field=None)
    assert td.Predict("question -> answer", temperature=0.5).lm_kwargs == {"temperature": 0.5}


@pytest.mark.parametrize(
    ("name", "advice"),
    [
        ("load", "call `program.load(path)`"),
        ("syncify", "td.run(program, **inputs)"),
        ("ProgramOfThought", "needs a sandbox"),
        ("ColBERTv2", "td.retrievers.Embeddings"),
    ],
)
def test_a_dspy_name_not_provided_says_what_to_use(name: str, advice: str) -> None:
    with pytest.raises(AttributeError, match=f"td.{name} is DSPy's, not provided here") as info:
        getattr(td, name)
    assert advice in str(info.value)


def test_a_bare_model_name_is_refused_naming_the_provider_prefix_litellm_would_guess() -> None:
    with pytest.raises(td.errors.ConfigurationError, match="for example 'openai/gpt-5'"):
        td.LM("gpt-5")
    with pytest.raises(td.errors.ConfigurationError, match="'anthropic/claude-sonnet-4'"):
        td.LM("claude-sonnet-4")


def test_dspys_tool_sync_conversion_setting_says_tools_are_awaited() -> None:
    with pytest.raises(TypeError, match=r"always awaited here: write `await tool\(x=5\)`"):
        td.configure(allow_tool_async_sync_conversion=True)


async def test_miprov2_compile_takes_dspys_demo_counts_and_names_what_it_does_not_take() -> None:
    optimizer = td.MIPROv2(metric=metric, auto="light")
    with pytest.raises(TypeError, match="requires_permission_to_run=: the run starts at once"):
        await optimizer.compile(
            td.Predict("question -> answer"), trainset=DEVSET, requires_permission_to_run=False
        )
    with pytest.raises(td.errors.TrioDSPyError):  # too small a trainset, after the keywords
        await optimizer.compile(
            td.Predict("question -> answer"),
            trainset=DEVSET[:1],
            max_bootstrapped_demos=2,
            max_labeled_demos=1,
        )
    assert (optimizer.max_bootstrapped_demos, optimizer.max_labeled_demos) == (2, 1)
