from __future__ import annotations

import enum
from typing import Literal, Optional

import pytest

import trio_dspy as td
from trio_dspy.errors import SignatureError

from .story import HandleCustomer, MakeDrink, Mood, Refund


def test_class_signature_keeps_field_order_types_and_instructions() -> None:
    assert list(HandleCustomer.input_fields) == ["request", "mood"]
    assert list(HandleCustomer.output_fields) == ["action", "confidence"]
    assert HandleCustomer.fields["mood"].annotation is Mood
    assert HandleCustomer.fields["action"].annotation == MakeDrink | Refund
    assert HandleCustomer.fields["request"].desc == "what the customer said"
    assert HandleCustomer.instructions == "Decide what the coffee shop should do for the customer."


def test_default_instructions_name_the_fields() -> None:
    class QA(td.Signature):
        question: str = td.InputField()
        answer: str = td.OutputField()

    assert QA.instructions == "Given the fields `question`, produce the fields `answer`."


def test_string_signature_with_types() -> None:
    sig = td.make_signature("question, context: list[str] -> answer, confidence: float")
    assert {n: f.annotation for n, f in sig.fields.items()} == {
        "question": str,
        "context": list[str],
        "answer": str,
        "confidence": float,
    }
    assert list(sig.input_fields) == ["question", "context"]


def test_string_signature_via_signature_call_and_instructions() -> None:
    # mypy does not read a metaclass's __call__, so it sees Signature() take no arguments.
    sig = td.Signature("q -> a: int", "Answer tersely.")  # type: ignore[call-arg]
    assert sig.instructions == "Answer tersely."
    assert sig.output_fields["a"].annotation is int


def test_string_signature_reads_complex_types_without_eval() -> None:
    sig = td.make_signature(
        "x: Optional[dict[str, list[int]]] -> y: Literal['a', 'b'], z: int | None, m: Mood",
        custom_types={"Mood": Mood},
    )
    assert sig.fields["x"].annotation == Optional[dict[str, list[int]]]  # noqa: UP045
    assert sig.fields["y"].annotation == Literal["a", "b"]
    assert sig.fields["z"].annotation == int | None
    assert sig.fields["m"].annotation is Mood


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("a, b", "exactly one '->'"),
        ("a -> ", "no output field"),
        ("a -> b: Unknown", "unknown type 'Unknown'"),
        ("a -> a", "appears twice"),
        ("a -> completed", "reserved"),
        ("a -> b: __import__('os')", "cannot read the type"),
        ("a b -> c", "not a valid field name"),
    ],
)
def test_bad_string_signatures_fail_clearly(spec: str, match: str) -> None:
    with pytest.raises(SignatureError, match=match):
        td.make_signature(spec)


def test_field_without_annotation_is_rejected_by_name() -> None:
    with pytest.raises(SignatureError, match=r"Bad\.answer: field has no type annotation"):

        class Bad(td.Signature):
            question: str = td.InputField()
            answer = td.OutputField()


def test_field_neither_input_nor_output_is_rejected_by_name() -> None:
    with pytest.raises(SignatureError, match=r"Bad\.note: field is neither input nor output"):

        class Bad(td.Signature):
            question: str = td.InputField()
            note: str = "hello"
            answer: str = td.OutputField()


def test_signature_without_output_is_rejected() -> None:
    with pytest.raises(SignatureError, match="no output field"):

        class Bad(td.Signature):
            question: str = td.InputField()


@pytest.mark.parametrize("name", ["instructions", "completed", "usage", "_private"])
def test_reserved_names_are_rejected(name: str) -> None:
    with pytest.raises(SignatureError, match="reserved"):
        td.make_signature(f"q -> {name}") if not name.startswith("_") else type(
            "Bad",
            (td.Signature,),
            {"__annotations__": {name: str}, name: td.OutputField()},
        )


def test_unsupported_type_is_rejected_with_field_name() -> None:
    with pytest.raises(SignatureError, match=r"Bad\.when: unsupported type"):

        class Bad(td.Signature):
            q: str = td.InputField()
            when: complex = td.OutputField()


def test_subclass_inherits_and_extends_fields() -> None:
    class Base(td.Signature):
        question: str = td.InputField()
        answer: str = td.OutputField()

    class WithContext(Base):
        """Use the context."""

        context: list[str] = td.InputField()

    assert list(WithContext.input_fields) == ["question", "context"]
    assert list(WithContext.output_fields) == ["answer"]


def test_prepend_and_with_instructions_return_new_classes() -> None:
    sig = HandleCustomer.prepend("reasoning", td.OutputField(desc="think"), str)
    assert list(sig.output_fields) == ["reasoning", "action", "confidence"]
    assert sig.instructions == HandleCustomer.instructions
    assert list(HandleCustomer.output_fields) == ["action", "confidence"]
    assert sig.with_instructions("new").instructions == "new"


def test_enum_and_literal_types_in_class_form() -> None:
    class Level(enum.Enum):
        low = 1
        high = 2

    class Sig(td.Signature):
        text: str = td.InputField()
        level: Level = td.OutputField()
        label: Literal["spam", "ham"] = td.OutputField()

    assert Sig.fields["level"].type_name == "Level"
    assert Sig.fields["label"].type_name == "Literal['spam', 'ham']"
