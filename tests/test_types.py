from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any, Literal

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_dspy import types
from trio_dspy.errors import StructuringError

from .story import Drink, MakeDrink, Refund, Size


@attrs.frozen
class Order:
    items: list[Drink]
    notes: dict[str, int]
    rush: bool = False


@dataclasses.dataclass
class Point:
    x: int
    y: float = 0.0


def test_structuring_error_names_path_and_value() -> None:
    bad = {"drink": {"name": "latte", "size": "huge"}}
    with pytest.raises(StructuringError) as info:
        types.structure(bad, MakeDrink, path="action")
    assert str(info.value) == "action.drink.size: 'huge' is not one of small, medium, large"
    assert info.value.path == "action.drink.size"
    assert info.value.value == "huge"


def test_structuring_error_inside_list_names_index() -> None:
    with pytest.raises(StructuringError, match=r"^order\.items\[1\]\.size: 'xl'"):
        types.structure(
            {"items": [{"name": "a", "size": "small"}, {"name": "b", "size": "xl"}], "notes": {}},
            Order,
            path="order",
        )


def test_tagged_union_picks_class_by_type_tag() -> None:
    value = types.structure(
        {"_type": "Refund", "order_id": "A1", "amount": "4.50"}, MakeDrink | Refund
    )
    assert value == Refund("A1", 4.5)


def test_tagged_union_unknown_tag_is_an_error() -> None:
    with pytest.raises(StructuringError, match="_type 'Coupon' is not one of MakeDrink, Refund"):
        types.structure({"_type": "Coupon"}, MakeDrink | Refund, path="action")


def test_untagged_union_member_still_accepted_when_fields_fit() -> None:
    assert types.structure({"order_id": "A2", "amount": 1}, MakeDrink | Refund) == Refund("A2", 1.0)


def test_model_style_coercions() -> None:
    assert types.structure("Large", Size) is Size.large
    assert types.structure("LARGE", Size) is Size.large
    assert types.structure("3", int) == 3
    assert types.structure(3.0, int) == 3
    assert types.structure("0.25", float) == 0.25
    assert types.structure("yes", bool) is True
    assert types.structure("null", int | None) is None
    assert types.structure(["1", 2], tuple[int, int]) == (1, 2)
    assert types.structure({"x": "2"}, Point) == Point(2, 0.0)


@pytest.mark.parametrize(
    ("value", "tp", "reason"),
    [
        ("abc", list[str], "expected a list"),
        (True, int, "expected an integer"),
        ("maybe", bool, "expected true or false"),
        ("x", Literal["a", "b"], "'x' is not one of a, b"),
        ([1, 2, 3], tuple[int, int], "expected 2 items"),
        ({"y": 1.0}, Point, "missing field(s) x"),
    ],
)
def test_structuring_errors(value: Any, tp: Any, reason: str) -> None:
    with pytest.raises(StructuringError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        types.structure(value, tp)


def test_parse_text_reads_code_fences_and_plain_words() -> None:
    assert types.parse_text('```json\n{"a": [1, 2]}\n```', dict[str, list[int]]) == {"a": [1, 2]}
    assert types.parse_text("medium", Size) is Size.medium
    assert types.parse_text("  keep  spaces? ", str) == "keep  spaces?"
    text = 'Sure! {"_type": "Refund", "order_id": "Z", "amount": 2} hope that helps'
    assert types.parse_text(text, MakeDrink | Refund) == Refund("Z", 2.0)


def test_schema_of_tagged_union_is_strict_ready() -> None:
    schema = types.json_schema(MakeDrink | Refund, strict=True)
    make, refund = schema["anyOf"]
    assert make["properties"]["_type"] == {"type": "string", "enum": ["MakeDrink"]}
    assert make["required"] == ["_type", "drink", "quantity"]
    assert make["additionalProperties"] is False
    assert refund["properties"]["amount"] == {"type": "number"}
    drink = make["properties"]["drink"]
    assert drink["properties"]["size"]["enum"] == ["small", "medium", "large"]


def test_non_strict_schema_leaves_defaults_optional() -> None:
    schema = types.json_schema(MakeDrink)
    assert schema["required"] == ["drink"]


def test_unstructure_tags_union_members_and_round_trips() -> None:
    value = MakeDrink(Drink("latte", Size.large, "oat"), 2)
    data = types.unstructure(value, MakeDrink | Refund)
    assert data["_type"] == "MakeDrink"
    assert data["drink"]["size"] == "large"
    assert types.structure(json.loads(json.dumps(data)), MakeDrink | Refund) == value


@attrs.frozen
class Basket:
    pick: MakeDrink | Refund
    maybe: Drink | None = None
    by_size: dict[Size, MakeDrink | Refund] = attrs.field(factory=dict)


def test_unstructure_tags_only_where_the_declared_type_is_a_union_of_records() -> None:
    drink = Drink("tea", Size.small)
    assert types.unstructure(drink) == {"name": "tea", "size": "small", "milk": None}
    assert types.unstructure(drink, Drink | None) == {"name": "tea", "size": "small", "milk": None}
    refund = Refund("R", 1.0)
    basket = Basket(refund, drink, {Size.large: refund})
    assert types.unstructure(basket) == {
        "pick": {"_type": "Refund", "order_id": "R", "amount": 1.0},
        "maybe": {"name": "tea", "size": "small", "milk": None},
        "by_size": {"large": {"_type": "Refund", "order_id": "R", "amount": 1.0}},
    }
    assert types.structure(types.unstructure(basket), Basket) == basket


def test_unstructure_finds_unions_inside_optional_containers() -> None:
    tp = list[MakeDrink | Refund] | None
    data = types.unstructure((Refund("A", 2.0),), tp)
    assert data == [{"_type": "Refund", "order_id": "A", "amount": 2.0}]
    assert types.unstructure(None, tp) is None
    pair = types.unstructure((Refund("A", 2.0), 3), tuple[MakeDrink | Refund, int])
    assert pair == [{"_type": "Refund", "order_id": "A", "amount": 2.0}, 3]


def test_unstructure_tag_all_tags_every_record() -> None:
    value = {"action": MakeDrink(Drink("mocha", Size.medium))}
    assert types.unstructure(value, tag_all=True) == {
        "action": {
            "_type": "MakeDrink",
            "drink": {"_type": "Drink", "name": "mocha", "size": "medium", "milk": None},
            "quantity": 1,
        }
    }
    assert types.structure(types.unstructure(Point(1), tag_all=True), Point) == Point(1)


# ------------------------------------------------------------ property-based checks
sizes = st.sampled_from(list(Size))
text = st.text(max_size=20)
drinks = st.builds(Drink, name=text, size=sizes, milk=st.none() | text)
actions = st.one_of(
    st.builds(MakeDrink, drink=drinks, quantity=st.integers(-(10**6), 10**6)),
    st.builds(Refund, order_id=text, amount=st.floats(allow_nan=False, allow_infinity=False)),
)


@given(actions)
def test_round_trip_through_json(action: MakeDrink | Refund) -> None:
    data = json.loads(json.dumps(types.unstructure(action, MakeDrink | Refund)))
    assert types.structure(data, MakeDrink | Refund) == action


@given(st.lists(actions, max_size=5))
def test_round_trip_lists(values: list[MakeDrink | Refund]) -> None:
    tp = list[MakeDrink | Refund]
    data = json.loads(json.dumps(types.unstructure(values, tp)))
    assert types.structure(data, tp) == values


def _valid(value: Any, schema: dict[str, Any]) -> bool:
    """A tiny JSON-schema check covering what json_schema emits."""
    if "anyOf" in schema:
        return any(_valid(value, s) for s in schema["anyOf"])
    if "enum" in schema and value not in schema["enum"]:
        return False
    kind = schema.get("type")
    checks = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    if kind and not checks[kind](value):
        return False
    if kind == "array":
        return all(_valid(v, schema.get("items", {})) for v in value)
    if kind == "object" and "properties" in schema:
        if any(k not in value for k in schema.get("required", [])):
            return False
        if schema.get("additionalProperties") is False and set(value) - set(schema["properties"]):
            return False
        return all(_valid(v, schema["properties"][k]) for k, v in value.items())
    return True


@given(actions)
def test_unstructured_values_satisfy_their_strict_schema(action: MakeDrink | Refund) -> None:
    tp = MakeDrink | Refund
    assert _valid(types.unstructure(action, tp), types.json_schema(tp, strict=True))


class Color(enum.Enum):
    red = 1
    blue = 2


@given(st.sampled_from(list(Color)))
def test_int_enum_schema_and_structure(color: Color) -> None:
    assert types.json_schema(Color) == {"type": "integer", "enum": [1, 2], "title": "Color"}
    assert types.structure(color.value, Color) is color
    assert types.structure(str(color.value), Color) is color


def test_json_with_raw_newlines_inside_strings_is_read_as_small_models_write_it() -> None:
    from trio_dspy.types import loads_json
    from trio_dspy.types.text import find_json

    text = '{ "proposed_instruction": "line one\n| line two\t", "n": 1 }'
    assert loads_json(text) == {"proposed_instruction": "line one\n| line two\t", "n": 1}
    assert find_json(f"Sure! {text} done", "{") == loads_json(text)
    with pytest.raises(ValueError):
        loads_json('{"a": "unterminated\n')


async def test_a_json_answer_with_a_raw_newline_in_a_string_parses() -> None:
    import trio_dspy as td
    from trio_dspy.testing import DummyLM

    lm = DummyLM(['{"answer": "first line\nsecond line"}'])
    with td.context(lm=lm, adapter=td.JSONAdapter()):
        pred = await td.Predict("question -> answer")(question="two lines?")
    assert pred.answer == "first line\nsecond line"
