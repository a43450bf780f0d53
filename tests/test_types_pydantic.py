"""pydantic BaseModel classes as field types: described, read and validated by pydantic."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, field_validator

import trio_dspy as td
from trio_dspy import types
from trio_dspy.errors import (
    AdapterParseError,
    SignatureError,
    StructuringError,
    ToolArgumentError,
)
from trio_dspy.testing import DummyLM, SimConfig, SimReply, serve_sim

ADAPTERS = pytest.mark.parametrize(
    "adapter", [td.ChatAdapter(), td.JSONAdapter()], ids=["chat", "json"]
)
PROVIDERS = pytest.mark.parametrize("provider", ["openai", "anthropic"])


class Item(BaseModel):
    name: str
    qty: int = Field(ge=1, description="how many")

    @field_validator("name")
    @classmethod
    def not_a_placeholder(cls, value: str) -> str:
        if value.strip().lower() in ("x", "?"):
            raise ValueError("name a real drink, not a placeholder")
        return value.strip().title()


class Order(BaseModel):
    items: list[Item]
    note: str | None = None


class TakeOrder(td.Signature):
    """Turn the request into an order."""

    request: str = td.InputField()
    previous: Order | None = td.InputField()
    order: Order = td.OutputField()
    extras: list[Item] = td.OutputField()


GOOD = {"order": {"items": [{"name": "latte", "qty": 2}], "note": "oat"}, "extras": []}
BAD = {"order": {"items": [{"name": "x", "qty": 1}]}, "extras": []}


def sim_lm(sim: Any, provider: str) -> td.LM:
    base = sim.base_url if provider == "openai" else sim.root_url
    return td.LM(f"{provider}/sim-model", base_url=base, api_key="k")


def last_user_text(body: Mapping[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content)


@ADAPTERS
@PROVIDERS
async def test_a_model_output_with_a_validator_round_trips_over_http(
    adapter: td.Adapter, provider: str
) -> None:
    config = SimConfig(script=lambda body: SimReply(outputs=GOOD))
    previous = Order(items=[Item(name="tea", qty=1)])
    async with serve_sim(config) as sim, sim_lm(sim, provider) as lm:
        with td.context(lm=lm, adapter=adapter):
            pred = await td.Predict(TakeOrder)(request="two oat lattes", previous=previous)
    # The validator ran on the way in: it title-cases the name.
    assert pred.order == Order(items=[Item(name="Latte", qty=2)], note="oat")
    assert pred.extras == []
    # The input model went out as JSON, as pydantic dumps it.
    sent = last_user_text(sim.requests[-1])
    assert '{"items": [{"name": "Tea", "qty": 1}], "note": null}' in sent


@ADAPTERS
@PROVIDERS
async def test_a_validator_error_reaches_the_reask_with_the_field_path(
    adapter: td.Adapter, provider: str
) -> None:
    replies = iter([BAD, GOOD])
    config = SimConfig(script=lambda body: SimReply(outputs=next(replies)))
    async with serve_sim(config) as sim, sim_lm(sim, provider) as lm:
        with td.context(lm=lm, adapter=adapter):
            pred = await td.Predict(TakeOrder)(request="a latte", previous=None)
    assert pred.order.items[0].name == "Latte"
    assert len(sim.requests) == 2
    reask = last_user_text(sim.requests[1])
    assert (
        "could not be used: order.items[0].name: Value error, name a real drink, "
        "not a placeholder" in reask
    )


async def test_a_validator_error_after_the_last_reask_is_an_adapter_parse_error() -> None:
    lm = DummyLM([BAD], cycle=True)
    with td.context(lm=lm, max_parse_retries=1), pytest.raises(AdapterParseError) as info:
        await td.Predict(TakeOrder)(request="?", previous=None)
    assert "order.items[0].name" in str(info.value)
    assert info.value.attempts == 2


@PROVIDERS
async def test_generated_answers_fit_the_strict_schema_over_http(provider: str) -> None:
    class Plain(BaseModel):
        items: list[dict[str, int]]
        size: int = Field(default=1, ge=1, le=3)
        note: str | None = None

    sig = td.make_signature("request -> plain: Plain", custom_types={"Plain": Plain})
    async with serve_sim() as sim, sim_lm(sim, provider) as lm:
        with td.context(lm=lm, adapter=td.JSONAdapter()):
            for i in range(5):
                pred = await td.Predict(sig)(request=f"order {i}")
                assert isinstance(pred.plain, Plain) and 1 <= pred.plain.size <= 3


def test_the_strict_schema_closes_objects_and_requires_every_property() -> None:
    fmt = td.JSONAdapter().response_format(TakeOrder)
    assert fmt.schema is not None
    order = fmt.schema["properties"]["order"]
    assert order["additionalProperties"] is False
    assert order["required"] == ["items", "note"]
    item = order["properties"]["items"]["items"]
    assert item["required"] == ["name", "qty"] and item["additionalProperties"] is False
    assert item["properties"]["qty"]["minimum"] == 1
    text = json.dumps(fmt.schema)
    assert "$ref" not in text and "$defs" not in text and '"default"' not in text


def test_the_prompt_schema_keeps_defaults_and_what_is_optional() -> None:
    schema = types.json_schema(Order)
    assert schema["required"] == ["items"]
    assert schema["properties"]["note"]["default"] is None
    assert schema["additionalProperties"] is False

    # A dict inside keeps its own additionalProperties.
    class Tally(BaseModel):
        counts: dict[str, int]

    assert types.json_schema(Tally)["properties"]["counts"]["additionalProperties"] == {
        "type": "integer"
    }


def test_validation_errors_name_the_path_inside_lists_and_optionals() -> None:
    with pytest.raises(StructuringError) as info:
        types.structure(
            [{"name": "tea", "qty": 1}, {"name": "mocha", "qty": 0}], list[Item], path="extras"
        )
    assert info.value.path == "extras[1].qty"
    assert info.value.value == 0
    assert "greater than or equal to 1" in info.value.reason
    with pytest.raises(StructuringError, match=r"^previous\.items\[0\]\.name: Value error"):
        types.structure({"items": [{"name": "?", "qty": 1}]}, Order | None, path="previous")
    assert types.structure(None, Order | None) is None


def test_every_error_of_a_value_is_listed() -> None:
    with pytest.raises(StructuringError) as info:
        types.structure({"items": [{"name": "x", "qty": 0}, {}]}, Order, path="order")
    assert info.value.path == "order.items[0].name"
    assert "items[0].qty: Input should be greater than or equal to 1" in info.value.reason
    assert "items[1].name: Field required" in info.value.reason


def test_text_around_the_json_and_lax_values_are_read() -> None:
    text = 'Here it is: {"items": [{"name": "tea", "qty": "3"}]} - enjoy'
    assert types.parse_text(text, Order) == Order(items=[Item(name="Tea", qty=3)])


def test_models_in_unions_lists_and_optionals_unstructure_and_structure_back() -> None:
    value = [Order(items=[Item(name="tea", qty=2)]), None]
    data = types.unstructure(value, list[Order | None])
    assert data == [{"items": [{"name": "Tea", "qty": 2}], "note": None}, None]
    assert types.structure(data, list[Order | None]) == value
    assert types.structure({"name": "tea", "qty": 1}, Item | str) == Item(name="Tea", qty=1)


def test_aliases_are_what_the_schema_names_and_the_dump_writes() -> None:
    class Aliased(BaseModel):
        model_config = ConfigDict(populate_by_name=True)
        order_id: str = Field(alias="orderId")

    assert list(types.json_schema(Aliased)["properties"]) == ["orderId"]
    assert types.unstructure(Aliased(orderId="A1")) == {"orderId": "A1"}
    assert types.structure({"orderId": "A1"}, Aliased) == Aliased(orderId="A1")


def test_a_recursive_model_fails_when_the_signature_is_defined() -> None:
    class Node(BaseModel):
        value: int
        children: list[Node] = []

    with pytest.raises(SignatureError, match=r"Broken\.tree: unsupported type Node .*itself"):

        class Broken(td.Signature):
            question: str = td.InputField()
            tree: Node = td.OutputField()


def test_a_model_pydantic_cannot_describe_fails_when_the_signature_is_defined() -> None:
    class Opaque:
        pass

    class Holder(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        thing: Opaque

    with pytest.raises(SignatureError, match=r"unsupported type Holder \(pydantic cannot"):
        td.make_signature("q -> h: Holder", custom_types={"Holder": Holder})


async def test_saved_demos_with_models_load_back(tmp_path: Any) -> None:
    program = td.Predict(TakeOrder)
    program.demos = [
        td.Example(request="tea", previous=None, order=Order(items=[Item(name="tea", qty=1)]))
    ]
    program.save(tmp_path / "p.json")
    loaded = td.Predict(TakeOrder)
    loaded.load(tmp_path / "p.json")
    assert loaded.demos[0]["order"] == Order(items=[Item(name="Tea", qty=1)])


async def test_a_tool_taking_a_model_gets_it_validated() -> None:
    async def order(item: Item) -> str:
        return f"{item.qty} x {item.name}"

    tool = td.Tool(order)
    assert tool.parameters["properties"]["item"]["required"] == ["name", "qty"]
    assert await tool.acall('{"item": {"name": "mocha", "qty": "2"}}') == "2 x Mocha"
    with pytest.raises(ToolArgumentError, match=r"item\.name: Value error, name a real drink"):
        await tool.acall('{"item": {"name": "?", "qty": 1}}')


def test_a_union_of_models_reads_whichever_fits() -> None:
    class Refund(BaseModel):
        order_id: str
        amount: float

    value = types.structure({"order_id": "A1", "amount": "4.5"}, Item | Refund)
    assert value == Refund(order_id="A1", amount=4.5)
    assert types.json_schema(Item | Refund)["anyOf"][1]["title"] == "Refund"
