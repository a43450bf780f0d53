from __future__ import annotations

import threading
from typing import Literal

import pytest
import trio

import trio_dspy as td
from trio_dspy.errors import SignatureError, ToolArgumentError, ToolTimeoutError

from .story import Drink, Size


def make_drink(
    name: str, size: Literal["small", "medium", "large"] = "medium", milk: str | None = None
) -> str:
    """Make a drink and add it to the order.

    Args:
        name: the drink, e.g. latte.
        size: cup size,
            medium unless asked.
        milk: milk to use, if any.
    """
    return f"{size} {name}" + (f" with {milk} milk" if milk else "")


def test_name_description_and_schema_come_from_the_function() -> None:
    tool = td.Tool(make_drink)
    assert tool.name == "make_drink"
    assert tool.desc == "Make a drink and add it to the order."
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "the drink, e.g. latte."},
            "size": {
                "type": "string",
                "enum": ["small", "medium", "large"],
                "description": "cup size, medium unless asked.",
                "default": "medium",
            },
            "milk": {
                "anyOf": [{"type": "string"}, {"type": "null"}],
                "description": "milk to use, if any.",
                "default": None,
            },
        },
        "required": ["name"],
        "additionalProperties": False,
    }
    spec = td.Tool(make_drink, name="brew", desc="Brew it.").spec()
    assert (spec.name, spec.description) == ("brew", "Brew it.")


def test_sphinx_docstrings_and_attrs_arguments() -> None:
    def order(drink: Drink, count: int = 1) -> str:
        """Place an order.

        :param drink: what to make
        :param count: how many
        """
        return f"{count} x {drink.name}"

    tool = td.Tool(order)
    assert tool.parameters["properties"]["drink"]["properties"]["size"]["enum"] == [
        "small",
        "medium",
        "large",
    ]
    assert tool.parameters["properties"]["count"]["description"] == "how many"
    assert tool.validate({"drink": {"name": "latte", "size": "large"}}) == {
        "drink": Drink("latte", Size.large)
    }


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ('{"name": "latte", "size": "huge"}', "size: 'huge' is not one of small, medium, large"),
        ('{"size": "small"}', "missing required argument(s) name"),
        ('{"name": "latte", "sugar": 2}', "unknown argument(s) sugar"),
        ("{not json", "arguments are not valid JSON"),
        ("[1]", "arguments must be a JSON object"),
    ],
)
async def test_invalid_arguments_never_reach_the_function(arguments: str, message: str) -> None:
    calls: list[object] = []

    def spy(name: str, size: Literal["small", "medium", "large"] = "medium") -> str:
        calls.append((name, size))
        return "ok"

    with pytest.raises(ToolArgumentError) as info:
        await td.Tool(spy).acall(arguments)
    assert message in str(info.value)
    assert info.value.tool == "spy"
    assert calls == []


async def test_sync_tools_run_in_a_worker_thread_unless_non_blocking() -> None:
    def where() -> str:
        return threading.current_thread().name

    main = threading.current_thread().name
    assert await td.Tool(where).acall({}) != main
    assert await td.Tool(where, blocking=False).acall({}) == main


async def test_async_tools_are_awaited_and_structured() -> None:
    async def scale(size: Size, factor: float) -> str:
        await trio.lowlevel.checkpoint()
        return f"{size.value} x {factor}"

    assert await td.Tool(scale).acall('{"size": "Large", "factor": "2"}') == "large x 2.0"
    assert await td.Tool(scale)(size="small", factor=1) == "small x 1.0"


async def test_timeout_cancels_only_that_call(autojump_clock: trio.testing.MockClock) -> None:
    async def slow() -> str:
        await trio.sleep(10)
        return "late"

    tool = td.Tool(slow, timeout=2)
    start = trio.current_time()
    with pytest.raises(ToolTimeoutError, match="slow timed out after 2s"):
        await tool.acall({})
    assert trio.current_time() - start == pytest.approx(2)


def test_varargs_are_rejected() -> None:
    def anything(*args: str) -> None: ...

    with pytest.raises(SignatureError, match=r"\*args/\*\*kwargs"):
        td.Tool(anything)


NUMPY_DOC = """Make a drink and add it
to the order.

Parameters
----------
name : str
    the drink, e.g. latte.
size : str
    cup size, medium
    unless asked.
"""
SPHINX_DOC = """Make a drink and add it
to the order.

:param str name: the drink, e.g. latte.
:param size: cup size, medium
    unless asked.
:returns: the drink made.
"""
EPYDOC_DOC = """Make a drink and add it
to the order.

@param name: the drink, e.g. latte.
@param size: cup size, medium unless asked.
@return: the drink made.
"""
GOOGLE_DOC = """Make a drink and add it
to the order.

Args:
    name (str): the drink, e.g. latte.
    size: cup size, medium
        unless asked.

Returns:
    the drink made.
"""


@pytest.mark.parametrize("doc", [NUMPY_DOC, SPHINX_DOC, EPYDOC_DOC, GOOGLE_DOC])
def test_every_common_docstring_style_describes_the_arguments(doc: str) -> None:
    def brew(name: str, size: str = "medium") -> str:
        return name

    brew.__doc__ = doc
    tool = td.Tool(brew)
    assert tool.desc == "Make a drink and add it to the order."
    props = tool.parameters["properties"]
    assert props["name"]["description"] == "the drink, e.g. latte."
    assert props["size"]["description"] == "cup size, medium unless asked."


def test_a_lambda_is_refused_until_it_is_named() -> None:
    with pytest.raises(SignatureError, match=r"a lambda has no name.*Tool\(fn, name="):
        td.Tool(lambda x: x)
    assert td.Tool(lambda: "ok", name="ping").name == "ping"
    with pytest.raises(SignatureError, match="'check menu' is not a name a model can call"):
        td.Tool(make_drink, name="check menu")


def test_a_tool_without_type_hints_warns_naming_the_arguments() -> None:
    def lookup(item, count: int = 1):  # type: ignore[no-untyped-def]
        """Look an item up."""
        return item

    with pytest.warns(UserWarning, match=r"tool lookup: argument\(s\) item have no type hint"):
        tool = td.Tool(lookup)
    with pytest.warns(UserWarning, match="tool lookup") as caught:
        td.ReAct("q -> a", tools=[lookup])
    assert caught[0].filename == __file__  # points at the caller, not into the package
    assert tool.validate({"item": [1, "any JSON"]}) == {"item": [1, "any JSON"]}
