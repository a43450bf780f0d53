"""td.Image inputs: built from URLs, files and bytes, sent as image parts of the user message."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import attrs
import pydantic
import pytest

import trio_dspy as td
from trio_dspy.errors import ImageTooLargeError, SignatureError
from trio_dspy.lm import LMRequest, Message
from trio_dspy.lm.cache import cache_key
from trio_dspy.lm.history import clear_history, format_history
from trio_dspy.messages import ImagePart, TextPart
from trio_dspy.telemetry import InMemoryExporter, collect
from trio_dspy.testing import DummyLM, serve_sim
from trio_dspy.types.image import MAX_IMAGE_BYTES

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
GIF = b"GIF89a" + b"\x01" * 32
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 32
PNG_B64 = base64.b64encode(PNG).decode()
URL = "https://example.com/cat.jpg"

ADAPTERS = pytest.mark.parametrize(
    "adapter", [td.ChatAdapter(), td.JSONAdapter()], ids=["chat", "json"]
)


class Describe(td.Signature):
    """Describe the photo."""

    question: str = td.InputField()
    photo: td.Image = td.InputField()
    caption: str = td.OutputField()


def sim_lm(sim: Any, provider: str) -> td.LM:
    base = sim.base_url if provider == "openai" else sim.root_url
    return td.LM(f"{provider}/sim-model", base_url=base, api_key="k")


# ---------------------------------------------------------------- on the wire
WIRE_IMAGE = {
    "openai": ("image_url", "image_url", {"url": f"data:image/png;base64,{PNG_B64}"}),
    "anthropic": (
        "image",
        "source",
        {"type": "base64", "media_type": "image/png", "data": PNG_B64},
    ),
}


@ADAPTERS
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_an_image_from_bytes_arrives_as_an_image_part_between_texts(
    adapter: td.Adapter, provider: str
) -> None:
    async with serve_sim() as sim, sim_lm(sim, provider) as lm:
        with td.context(lm=lm, adapter=adapter):
            pred = await td.Predict(Describe)(question="What?", photo=td.Image.from_bytes(PNG))
    assert isinstance(pred.caption, str) and pred.caption
    parts = sim.content_parts()
    kind, key, value = WIRE_IMAGE[provider]
    assert [p["type"] for p in parts] == ["text", kind, "text"]
    assert all(p["role"] == "user" for p in parts)
    assert parts[0]["text"].endswith("[[ ## photo ## ]]\n")
    assert "What?" in parts[0]["text"]
    assert parts[1][key] == value
    assert "Respond with" in parts[2]["text"]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_list_of_url_images_arrives_in_order(provider: str) -> None:
    sig = td.make_signature("photos: list[Image], question -> answer: int")
    photos = [td.Image.from_url(URL), td.Image.from_bytes(GIF)]
    async with serve_sim() as sim, sim_lm(sim, provider) as lm:
        with td.context(lm=lm):
            pred = await td.Predict(sig)(photos=photos, question="How many cats?")
    assert isinstance(pred.answer, int)
    images = [p for p in sim.content_parts() if p["type"] in ("image", "image_url")]
    if provider == "openai":
        assert [p["image_url"]["url"][:22] for p in images] == [URL[:22], "data:image/gif;base64,"]
    else:
        assert images[0]["source"] == {"type": "url", "url": URL}
        assert images[1]["source"]["media_type"] == "image/gif"


async def test_an_optional_image_left_out_sends_plain_text() -> None:
    sig = td.make_signature("question, photo: Optional[Image] -> answer")
    async with serve_sim() as sim, sim_lm(sim, "openai") as lm:
        with td.context(lm=lm):
            await td.Predict(sig)(question="Hi", photo=None)
    assert sim.content_parts() == []
    assert isinstance(sim.requests[-1]["messages"][-1]["content"], str)


async def test_demo_images_are_parts_of_the_demo_turns() -> None:
    lm = DummyLM([{"caption": "a cat"}])
    program = td.Predict(Describe)
    program.demos = [
        td.Example(question="?", photo=td.Image.from_url(URL), caption="a dog"),
    ]
    with td.context(lm=lm):
        await program(question="What?", photo=td.Image.from_bytes(JPEG))
    request = lm.history[-1].request
    demo_user, current = request.messages[1], request.messages[-1]
    assert ImagePart(URL) in demo_user.content
    assert isinstance(current.content, tuple)
    assert ImagePart(td.Image.from_bytes(JPEG).url) in current.content


def test_the_tool_calling_request_carries_the_image_too() -> None:
    request = td.ChatAdapter().format_request(
        Describe, [], {"question": "?", "photo": td.Image.from_url(URL)}, tools=[]
    )
    assert ImagePart(URL) in request.messages[-1].content


async def test_a_string_for_an_image_field_is_a_clear_type_error() -> None:
    with td.context(lm=DummyLM([{"caption": "x"}])), pytest.raises(TypeError, match="td.Image"):
        await td.Predict(Describe)(question="?", photo=URL)


# ------------------------------------------------- never an image as text
@attrs.frozen
class Note:
    text: str
    extra: Any = None


class Attachment(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)

    name: str
    blob: Any = None


IMAGE = td.Image.from_bytes(PNG)

# (field type, value holding an image, where the message says the image is)
STRAY_IMAGES = [
    ("str", IMAGE, "context"),
    ("list[str]", ["a", IMAGE], "context[1]"),
    ("Any", IMAGE, "context"),
    ("Any", [IMAGE], "context[0]"),
    ("dict[str, Any]", {"photos": [IMAGE]}, "context['photos'][0]"),
    ("int", IMAGE, "context"),
    ("Any", Note("hi", extra=IMAGE), "context.extra"),
    ("Any", Attachment(name="a", blob=(IMAGE,)), "context.blob[0]"),
]


@ADAPTERS
@pytest.mark.parametrize(("annotation", "value", "where"), STRAY_IMAGES)
async def test_an_image_in_a_field_not_typed_image_is_refused_before_anything_is_sent(
    adapter: td.Adapter, annotation: str, value: Any, where: str
) -> None:
    sig = td.make_signature(f"question, context: {annotation} -> answer")
    lm = DummyLM([{"answer": "a"}])
    exporter = InMemoryExporter()
    clear_history()
    async with collect(exporter):
        with (
            td.context(lm=lm, adapter=adapter, trace_content=True),
            pytest.raises(SignatureError) as info,
        ):
            await td.Predict(sig)(question="What?", context=value)
    message = str(info.value)
    assert f"{where}" in message and "td.Image" in message
    assert "list[td.Image]" in message
    assert PNG_B64[:40] not in message
    assert lm.requests == [] and list(lm.history) == []
    assert "no calls recorded" in format_history(5)
    assert PNG_B64[:40] not in repr([s.attributes for s in exporter.spans])
    assert PNG_B64[:40] not in repr([s.status for s in exporter.spans])


@ADAPTERS
async def test_an_image_in_a_demo_or_history_text_field_is_refused_too(
    adapter: td.Adapter,
) -> None:
    program = td.Predict("question -> answer")
    program.demos = [td.Example(question=IMAGE, answer="a cat")]
    lm = DummyLM([{"answer": "a"}])
    with td.context(lm=lm, adapter=adapter), pytest.raises(SignatureError, match="question"):
        await program(question="What?")
    program.demos = [td.Example(question="What?", answer={"seen": IMAGE})]
    with td.context(lm=lm, adapter=adapter), pytest.raises(SignatureError, match="answer"):
        await program(question="What?")
    chat = td.make_signature("history: History, question -> answer")
    turns = td.History(messages=[{"question": "Look", "answer": [IMAGE]}])
    with td.context(lm=lm, adapter=adapter), pytest.raises(SignatureError, match="answer"):
        await td.Predict(chat)(history=turns, question="What?")
    assert lm.requests == []


def test_an_image_deep_or_in_a_cycle_is_found_and_the_message_stays_short() -> None:
    deep: list[Any] = []
    node = deep
    for _ in range(50_000):  # far deeper than Python's recursion limit
        node.append([])
        node = node[0]
    node.append(IMAGE)
    cyclic: dict[str, Any] = {"note": "x"}
    cyclic["self"] = cyclic
    sig = td.make_signature("question, context: Any -> answer")
    with pytest.raises(SignatureError, match=r"context\[0\]\[0\].*…") as info:
        td.ChatAdapter().format(sig, [], {"question": "?", "context": deep})
    assert len(str(info.value)) < 500
    cyclic["photo"] = IMAGE
    with pytest.raises(SignatureError, match=r"at context\['photo'\]"):
        td.JSONAdapter().format(sig, [], {"question": "?", "context": cyclic})


async def test_image_fields_still_take_images_and_text_fields_text() -> None:
    lm = DummyLM([{"caption": "c"}, {"answer": "a"}])
    with td.context(lm=lm):
        await td.Predict(Describe)(question="Who?", photo=IMAGE)
        await td.Predict("question, notes: dict[str, Any] -> answer")(
            question="x", notes={"url": "https://example.com/a.png", "n": [1, None]}
        )
    assert ImagePart(IMAGE.url) in lm.requests[0].messages[-1].content
    assert '"url": "https://example.com/a.png"' in lm.requests[1].messages[-1].content


# -------------------------------------------------------- never dump the data
async def test_spans_with_trace_content_hold_no_image_data() -> None:
    exporter = InMemoryExporter()
    async with collect(exporter):
        with td.context(lm=DummyLM([{"caption": "c"}]), trace_content=True):
            await td.Predict(Describe)(question="secret-ish", photo=td.Image.from_bytes(PNG))
    chat = next(s for s in exporter.spans if s.name.startswith("chat"))
    recorded = str(chat.attributes["gen_ai.input.messages"])
    assert PNG_B64[:200] not in recorded
    assert f"data:image/png;base64,<{len(PNG_B64)} chars>" in recorded
    assert "secret-ish" in recorded
    assert len(recorded) < 10_000


async def test_inspect_history_shows_a_placeholder_not_the_data() -> None:
    lm = DummyLM([{"caption": "c"}])
    with td.context(lm=lm):
        await td.Predict(Describe)(question="?", photo=td.Image.from_bytes(PNG))
    text = format_history(1, lm)
    assert f"[image: data:image/png;base64,<{len(PNG_B64)} chars>]" in text
    assert PNG_B64[:200] not in text


def test_reprs_never_show_the_base64() -> None:
    image = td.Image.from_bytes(PNG)
    assert repr(image) == f"Image('data:image/png;base64,<{len(PNG_B64)} chars>')"
    assert PNG_B64[:50] not in repr(image.part())
    assert PNG_B64[:50] not in repr(Message("user", (TextPart("a"), image.part())))
    assert repr(td.Image.from_url(URL)) == f"Image({URL!r})"


def test_the_cache_key_depends_on_the_image() -> None:
    def key(image: td.Image) -> str:
        message = Message("user", (TextPart("What is it?"), image.part()))
        return cache_key("openai", "m", "http://a/v1", LMRequest([message]))

    a, b = td.Image.from_bytes(PNG), td.Image.from_bytes(PNG + b"\x00")
    assert key(a) == key(td.Image.from_bytes(PNG))
    assert key(a) != key(b) != key(td.Image.from_url(URL))
    plain = cache_key("openai", "m", "http://a/v1", LMRequest([Message("user", "What is it?")]))
    assert plain != key(a)


# --------------------------------------------------------------- construction
@pytest.mark.parametrize(
    ("data", "mime"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"), (WEBP, "image/webp")],
)
def test_from_bytes_recognises_the_format(data: bytes, mime: str) -> None:
    image = td.Image.from_bytes(data)
    assert image.mime_type == mime
    assert image.url == f"data:{mime};base64,{base64.b64encode(data).decode()}"


def test_from_bytes_of_an_unknown_format_needs_a_mime_type() -> None:
    with pytest.raises(ValueError, match="pass mime_type="):
        td.Image.from_bytes(b"not an image")
    assert td.Image.from_bytes(b"<svg/>", mime_type="image/svg+xml").mime_type == "image/svg+xml"
    with pytest.raises(ValueError, match="image type"):
        td.Image.from_bytes(b"abc", mime_type="text/plain")
    with pytest.raises(ValueError, match="empty"):
        td.Image.from_bytes(b"")
    with pytest.raises(TypeError, match="bytes"):
        td.Image.from_bytes("iVBOR")  # type: ignore[arg-type]


def test_from_file_reads_the_bytes_and_their_type(tmp_path: Path) -> None:
    (tmp_path / "photo.bin").write_bytes(JPEG)
    assert td.Image.from_file(tmp_path / "photo.bin") == td.Image.from_bytes(JPEG)
    (tmp_path / "odd.png").write_bytes(b"not really")
    assert td.Image.from_file(tmp_path / "odd.png").mime_type == "image/png"  # by its name
    (tmp_path / "notes").write_bytes(b"hello")
    with pytest.raises(ValueError, match=r"notes: cannot tell the image type"):
        td.Image.from_file(tmp_path / "notes")
    with pytest.raises(FileNotFoundError):
        td.Image.from_file(tmp_path / "missing.png")


def test_from_file_refuses_a_file_over_the_limit_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "huge.png"
    with big.open("wb") as f:
        f.write(PNG[:8])
        f.truncate(600 * 1024 * 1024)  # sparse: nothing is written past the header
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLargeError) as info:
            td.Image.from_file(big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024  # the file was never read
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert str(big) in message and str(600 * 1024 * 1024) in message
    assert "max_bytes=" in message
    assert info.value.size == 600 * 1024 * 1024
    assert info.value.limit == MAX_IMAGE_BYTES == 20 * 1024 * 1024


def test_the_image_size_limit_is_a_keyword_and_counts_bytes_exactly(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(PNG)
    assert td.Image.from_file(path, max_bytes=len(PNG)) == td.Image.from_bytes(PNG)
    with pytest.raises(ImageTooLargeError, match=f"{len(PNG)} bytes"):
        td.Image.from_file(path, max_bytes=len(PNG) - 1)
    assert td.Image.from_bytes(PNG, max_bytes=len(PNG)).mime_type == "image/png"
    with pytest.raises(ImageTooLargeError, match="max_bytes="):
        td.Image.from_bytes(PNG, max_bytes=100)
    with pytest.raises(ValueError, match="max_bytes"):
        td.Image.from_file(path, max_bytes=0)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_from_file_reads_no_more_than_the_limit_from_an_endless_stream(tmp_path: Path) -> None:
    fifo = tmp_path / "camera"
    os.mkfifo(fifo)
    written = 0

    def feed() -> None:
        nonlocal written
        with contextlib.suppress(BrokenPipeError), open(fifo, "wb") as f:
            f.write(PNG[:8])
            while written < 64 * 1024 * 1024:  # far past any limit: a reader must stop
                f.write(b"\x00" * 4096)
                written += 4096

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    started = time.monotonic()
    with pytest.raises(ImageTooLargeError, match="more than 10000 bytes") as info:
        td.Image.from_file(fifo, max_bytes=10_000)
    writer.join(timeout=10)
    assert not writer.is_alive()
    assert time.monotonic() - started < 10
    assert info.value.size is None  # a stream has no size to tell
    assert written < 64 * 1024 * 1024  # the reader hung up long before


def test_from_url_takes_http_and_data_urls_only() -> None:
    assert td.Image.from_url(URL).mime_type is None
    assert td.Image.from_url(f"data:image/png;base64,{PNG_B64}") == td.Image.from_bytes(PNG)
    for bad in ("file:///etc/passwd", "cat.jpg", "data:text/plain;base64,aGk=", "data:image/png,x"):
        with pytest.raises(ValueError):
            td.Image.from_url(bad)
    with pytest.raises(ValueError, match="base64"):
        td.Image.from_url("data:image/png;base64,not base64!")


def test_an_image_is_frozen() -> None:
    image = td.Image.from_url(URL)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        image.url = "https://example.com/other.png"  # type: ignore[misc]
    assert {image, td.Image.from_url(URL)} == {image}


def test_saved_demos_keep_their_images(tmp_path: Path) -> None:
    program = td.Predict(Describe)
    program.demos = [td.Example(question="?", photo=td.Image.from_bytes(GIF), caption="c")]
    program.save(tmp_path / "p.json")
    assert json.loads((tmp_path / "p.json").read_text())
    loaded = td.Predict(Describe)
    loaded.load(tmp_path / "p.json")
    assert loaded.demos[0]["photo"] == td.Image.from_bytes(GIF)


# ---------------------------------------------------- what a signature refuses
@pytest.mark.parametrize(
    "annotation",
    [
        "dict[str, Image]",
        "tuple[Image, Image]",
        "Image | str",
        "list[list[Image]]",
        "Optional[list[Optional[Image]]]",
    ],
)
def test_an_image_inside_a_type_adapters_cannot_send_fails_at_definition(annotation: str) -> None:
    with pytest.raises(SignatureError, match="Image .*can only be input types"):
        td.make_signature(f"photo: {annotation} -> caption")


def test_an_image_output_fails_at_definition() -> None:
    with pytest.raises(SignatureError, match=r"Draw\.picture: unsupported type Image"):

        class Draw(td.Signature):
            prompt: str = td.InputField()
            picture: td.Image = td.OutputField()

    with pytest.raises(SignatureError, match="can only be input types"):
        td.make_signature("prompt -> pictures: list[Image]")


def test_an_image_inside_a_record_fails_at_definition() -> None:
    @attrs.frozen
    class Post:
        text: str
        photo: td.Image

    with pytest.raises(SignatureError, match=r"Bad\.post: unsupported type Image"):

        class Bad(td.Signature):
            post: Post = td.InputField()
            reply: str = td.OutputField()


def test_a_tool_cannot_take_an_image() -> None:
    def look(photo: td.Image) -> str:
        """Look at it."""
        return "ok"

    with pytest.raises(SignatureError, match="Image"):
        td.Tool(look)


async def test_an_image_a_tool_returns_reaches_the_model_without_its_base64() -> None:
    from trio_dspy.messages import LMResponse, ToolCall
    from trio_dspy.testing import DummyLM

    picture = td.Image.from_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 3000)

    def snapshot() -> td.Image:
        """Take a picture."""
        return picture

    def turn(name: str, args: str) -> LMResponse:
        return LMResponse(tool_calls=(ToolCall("c", name, args),), finish_reason="tool_calls")

    lm = DummyLM(
        [turn("snapshot", "{}"), turn("finish", '{"answer": "done"}')], supports_tools=True
    )
    with td.context(lm=lm):
        pred = await td.ReAct("question -> answer", tools=[snapshot])(question="look")
    observation = pred.trajectory.steps[0].calls[0].observation
    assert "data:image/png;base64,<" in observation and "chars>" in observation
    payload = picture.url.split(",", 1)[1]
    assert payload not in repr(lm.requests[1])
