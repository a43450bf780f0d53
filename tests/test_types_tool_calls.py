"""td.ToolCalls outputs: the model decides the calls, the program runs them, in every adapter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import trio_dspy as td
from trio_dspy.errors import AdapterParseError, ToolArgumentError, ToolError
from trio_dspy.testing import DummyLM, serve_sim
from trio_dspy.types import json_schema, structure


def search(query: str) -> str:
    """Search the web."""
    return f"results for {query}"


async def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


class Plan(td.Signature):
    """Decide which tools to call."""

    question: str = td.InputField()
    tools: list[td.Tool] = td.InputField()
    calls: td.ToolCalls = td.OutputField()


CALLS = {
    "tool_calls": [
        {"name": "search", "args": {"query": "cats"}},
        {"name": "add", "args": {"a": 1, "b": 2}},
    ]
}


@pytest.mark.parametrize(
    ("adapter", "completion"),
    [
        (td.ChatAdapter(), f"[[ ## calls ## ]]\n{json.dumps(CALLS)}\n\n[[ ## completed ## ]]"),
        (td.JSONAdapter(), json.dumps({"calls": CALLS})),
        (td.XMLAdapter(), f"<calls>{json.dumps(CALLS)}</calls>"),
    ],
    ids=["chat", "json", "xml"],
)
async def test_each_adapter_reads_calls_the_program_then_runs(
    adapter: td.Adapter, completion: str
) -> None:
    calls = adapter.parse(Plan, completion)["calls"]
    assert isinstance(calls, td.ToolCalls)
    assert [(c.name, c.args, c.id) for c in calls.tool_calls] == [
        ("search", {"query": "cats"}, None),
        ("add", {"a": 1, "b": 2}, None),
    ]
    tools = [td.Tool(search), td.Tool(add)]
    assert [await c.execute(tools) for c in calls.tool_calls] == ["results for cats", 3]


async def test_a_predict_decides_calls_and_the_prompt_lists_the_tools_as_dspy_does() -> None:
    lm = DummyLM([{"calls": CALLS}])
    with td.context(lm=lm):
        pred = await td.Predict(Plan)(question="?", tools=[td.Tool(search), td.Tool(add)])
    assert [c.name for c in pred.calls.tool_calls] == ["search", "add"]
    system, user = lm.requests[0].messages[0].text, lm.requests[0].messages[-1].text
    assert "2. `tools` (list[Tool])" in system
    assert (
        "1. `calls` (ToolCalls): \n    Type description of ToolCalls: Tool calls must be" in system
    )
    assert "search, whose description is <desc>Search the web.</desc>. It takes arguments" in user
    assert (
        '`[[ ## calls ## ]]` (must be a JSON object like {"tool_calls": [{"name": "...", "args": {...}}]})'
        in user
    )


async def test_the_sim_server_answers_a_tool_calls_field_end_to_end() -> None:
    async with serve_sim() as sim, td.LM("openai/sim", base_url=sim.base_url, api_key="k") as lm:
        with td.context(lm=lm):
            pred = await td.Predict(Plan)(question="?", tools=[td.Tool(search)])
    assert isinstance(pred.calls, td.ToolCalls)


def test_the_shapes_models_and_providers_write_are_read() -> None:
    one = {"name": "search", "args": {"query": "x"}}
    openai = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "search", "arguments": '{"query": "x"}'},
    }
    for value in (
        {"tool_calls": [one]},
        [one],
        one,
        [openai],
        {"tool_calls": [{"name": "search", "arguments": {"query": "x"}}]},
    ):
        calls = structure(value, td.ToolCalls)
        assert [(c.name, c.args) for c in calls.tool_calls] == [("search", {"query": "x"})]
    assert structure([openai], td.ToolCalls).tool_calls[0].id == "call_1"
    assert td.ToolCalls.from_dict_list([one]).format() == {"tool_calls": [one]}


@pytest.mark.parametrize(
    "value",
    [
        "search",
        3,
        {"tool_calls": "search"},
        [{"args": {}}],
        [{"name": "", "args": {}}],
        [{"name": "s", "args": [1]}],
        [{"name": "s", "arguments": "{bad"}],
    ],
)
def test_what_is_not_a_call_is_a_structuring_error(value: Any) -> None:
    with pytest.raises(ValueError):
        structure(value, td.ToolCalls)


def test_a_chat_answer_that_is_not_calls_is_a_parse_error_naming_the_shape() -> None:
    with pytest.raises(AdapterParseError, match="tool_calls"):
        td.ChatAdapter().parse(Plan, "[[ ## calls ## ]]\nI would search.\n\n[[ ## completed ## ]]")


def test_the_json_adapter_asks_for_a_json_object_not_a_strict_schema() -> None:
    fmt = td.JSONAdapter().response_format(Plan)
    assert fmt is not None and fmt.type == "json_object"
    assert json_schema(td.ToolCalls)["properties"]["tool_calls"]["items"]["required"] == [
        "name",
        "args",
    ]


async def test_execute_finds_the_function_in_a_mapping_a_list_or_the_callers_names() -> None:
    call = td.ToolCalls.ToolCall("search", {"query": "dogs"})
    assert await call.execute({"search": search}) == "results for dogs"
    assert await call.execute([search]) == "results for dogs"
    assert await call.execute() == "results for dogs"  # found among this module's names
    with pytest.raises(ToolError, match="execute"):
        await td.ToolCalls.ToolCall("nope", {}).execute([search])


async def test_execute_checks_the_arguments_before_calling() -> None:
    with pytest.raises(ToolArgumentError, match="query"):
        await td.ToolCalls.ToolCall("search", {"q": "x"}).execute([td.Tool(search)])


def test_tool_calls_can_be_an_output_and_tools_only_an_input() -> None:
    sig = td.make_signature("question, tools: list[td.Tool] -> calls: td.ToolCalls")
    assert sig.output_fields["calls"].annotation is td.ToolCalls
    assert sig.input_fields["tools"].annotation == list[td.Tool]
    with pytest.raises(td.errors.SignatureError, match="input"):
        td.make_signature("question -> tool: Tool")


def test_saved_demos_keep_their_calls(tmp_path: Path) -> None:
    program = td.Predict("question -> calls: ToolCalls")
    calls = td.ToolCalls.from_dict_list([{"name": "search", "args": {"query": "x"}}])
    program.demos = [td.Example(question="q", calls=calls)]
    program.save(tmp_path / "p.json")
    loaded = td.Predict("question -> calls: ToolCalls")
    loaded.load(tmp_path / "p.json")
    assert loaded.demos[0]["calls"] == calls


# ----------------------------------------------------------- native tool calls
def _called(*calls: tuple[str, str, dict[str, Any]], text: str | None = None) -> Any:
    import httpx

    from .test_lm_support import chat

    return httpx.Response(
        200,
        json=chat(
            text,
            tool_calls=[
                {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
                for i, n, a in calls
            ],
            finish="tool_calls",
        ),
    )


async def test_the_json_adapter_sends_the_tools_natively_and_reads_the_calls_made() -> None:
    from .test_lm_support import Scripted

    server = Scripted(
        _called(("call_1", "search", {"query": "cats"}), ("call_2", "add", {"a": 1, "b": 2}))
    )
    async with server.lm() as lm:
        with td.context(lm=lm, adapter=td.JSONAdapter()):
            pred = await td.Predict(Plan)(question="?", tools=[td.Tool(search), td.Tool(add)])
    assert [(c.id, c.name, c.args) for c in pred.calls.tool_calls] == [
        ("call_1", "search", {"query": "cats"}),
        ("call_2", "add", {"a": 1, "b": 2}),
    ]
    body = server.bodies[0]
    assert [t["function"]["name"] for t in body["tools"]] == ["search", "add"]
    prompt = json.dumps(body["messages"])
    # The tools go as definitions, not text; the only output stays asked for in
    # text too, so a model that writes its calls is read as well.
    assert "`tools`" not in prompt and "Search the web" not in prompt and "`calls`" in prompt
    assert [await c.execute([search, add]) for c in pred.calls.tool_calls] == [
        "results for cats",
        3,
    ]


async def test_native_calls_with_other_outputs_read_those_from_the_text() -> None:
    from .test_lm_support import Scripted

    sig = td.make_signature("question, tools: list[td.Tool] -> note, calls: td.ToolCalls")
    text = "[[ ## note ## ]]\nsearching\n\n[[ ## completed ## ]]"
    server = Scripted(_called(("c1", "search", {"query": "x"}), text=text))
    adapter = td.ChatAdapter(use_native_function_calling=True)
    async with server.lm() as lm:
        with td.context(lm=lm, adapter=adapter):
            pred = await td.Predict(sig)(question="?", tools=[td.Tool(search)])
    assert pred.note == "searching" and pred.calls.tool_calls[0].name == "search"
    prompt = json.dumps(server.bodies[0]["messages"])
    assert "(ToolCalls)" not in prompt and "(list[Tool])" not in prompt and "`note` (str)" in prompt


async def test_a_native_answer_without_calls_gives_empty_calls() -> None:
    from .test_lm_support import Scripted, ok

    sig = td.make_signature("question, tools: list[td.Tool] -> note, calls: td.ToolCalls")
    server = Scripted(ok('{"note": "nothing to do"}'))
    async with server.lm() as lm:
        with td.context(lm=lm, adapter=td.JSONAdapter()):
            pred = await td.Predict(sig)(question="?", tools=[td.Tool(search)])
    assert pred.note == "nothing to do" and pred.calls == td.ToolCalls()


async def test_native_calls_need_a_tools_input_and_text_mode_does_not() -> None:
    sig = td.make_signature("question -> calls: td.ToolCalls")
    with (
        td.context(lm=DummyLM([{"calls": CALLS}]), adapter=td.JSONAdapter()),
        pytest.raises(td.errors.SignatureError, match=r"tools: list\[td.Tool\]"),
    ):
        await td.Predict(sig)(question="?")
    with td.context(lm=DummyLM([{"calls": CALLS}])):
        assert len((await td.Predict(sig)(question="?")).calls.tool_calls) == 2


def test_the_adapters_show_the_native_switch() -> None:
    assert repr(td.ChatAdapter(use_native_function_calling=True)) == (
        "ChatAdapter(use_native_function_calling=True)"
    )
    assert td.JSONAdapter().use_native_function_calling
    assert not td.JSONAdapter(use_native_function_calling=False).use_native_function_calling
