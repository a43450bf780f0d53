"""td.File inputs: built from bytes, paths and file ids, sent as each provider takes documents."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

import trio_dspy as td
from trio_dspy.errors import MediaTooLargeError, PartUnsupportedError, SignatureError
from trio_dspy.lm import LMRequest, Message
from trio_dspy.lm.cache import cache_key
from trio_dspy.messages import TextPart, loggable
from trio_dspy.testing import DummyLM, serve_sim

from .test_image import sim_lm

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 10
PDF_B64 = base64.b64encode(PDF).decode()


class Summarize(td.Signature):
    """Summarize the document."""

    doc: td.File = td.InputField()
    summary: str = td.OutputField()


async def test_a_pdf_arrives_as_an_openai_file_part() -> None:
    doc = td.File.from_bytes(PDF, "paper.pdf", "application/pdf")
    async with serve_sim() as sim, sim_lm(sim, "openai") as lm:
        with td.context(lm=lm):
            pred = await td.Predict(Summarize)(doc=doc)
    assert pred.summary
    parts = sim.content_parts()
    assert [p["type"] for p in parts] == ["text", "file", "text"]
    assert parts[1]["file"] == {
        "file_data": f"data:application/pdf;base64,{PDF_B64}",
        "filename": "paper.pdf",
    }


async def test_a_file_id_is_sent_to_openai_as_is() -> None:
    async with serve_sim() as sim, sim_lm(sim, "openai") as lm:
        with td.context(lm=lm):
            await td.Predict(Summarize)(doc=td.File.from_file_id("file-abc123"))
    file = next(p["file"] for p in sim.content_parts() if p["type"] == "file")
    assert file == {"file_id": "file-abc123"}


async def test_a_pdf_and_a_text_file_arrive_as_anthropic_documents() -> None:
    sig = td.make_signature("docs: list[td.File] -> summary")
    docs = [
        td.File.from_bytes(PDF, "paper.pdf", "application/pdf"),
        td.File.from_bytes("héllo".encode(), "notes.txt", "text/plain"),
    ]
    async with serve_sim() as sim, sim_lm(sim, "anthropic") as lm:
        with td.context(lm=lm):
            await td.Predict(sig)(docs=docs)
    documents = [p for p in sim.content_parts() if p["type"] == "document"]
    assert documents[0]["source"] == {
        "type": "base64",
        "media_type": "application/pdf",
        "data": PDF_B64,
    }
    assert documents[0]["title"] == "paper.pdf"
    assert documents[1]["source"] == {"type": "text", "media_type": "text/plain", "data": "héllo"}


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        (td.File.from_file_id("file-1"), "Files API"),
        (td.File.from_bytes(b"PK\x03\x04", "a.zip", "application/zip"), "application/zip"),
    ],
)
async def test_anthropic_refuses_what_it_cannot_read_before_sending(
    doc: td.File, match: str
) -> None:
    async with serve_sim() as sim, sim_lm(sim, "anthropic") as lm:
        with td.context(lm=lm), pytest.raises(PartUnsupportedError, match=match):
            await td.Predict(Summarize)(doc=doc)
    assert not sim.requests


def test_reprs_history_and_logs_never_show_the_data() -> None:
    doc = td.File.from_bytes(PDF, "paper.pdf", "application/pdf")
    assert repr(doc) == (
        f"File(file_data=<DATA_URI(application/pdf, {len(PDF_B64)} chars)>, filename='paper.pdf')"
    )
    message = Message("user", (TextPart("Read "), doc.part()))
    for shown in (repr(doc.part()), repr(message), message.text, json.dumps(loggable(message))):
        assert PDF_B64[:40] not in shown
    assert message.text == "Read [file: paper.pdf]"


def test_the_cache_key_hashes_the_file() -> None:
    def key(doc: td.File) -> str:
        message = Message("user", (TextPart("Read"), doc.part()))
        return cache_key("openai", "m", "http://a/v1", LMRequest([message]))

    a = td.File.from_bytes(PDF, "a.pdf", "application/pdf")
    assert key(a) == key(td.File.from_bytes(PDF, "a.pdf", "application/pdf"))
    assert key(a) != key(td.File.from_bytes(PDF + b"x", "a.pdf", "application/pdf"))
    assert key(a) != key(td.File.from_file_id("file-1"))


def test_from_path_names_and_types_the_file_by_its_path(tmp_path: Path) -> None:
    (tmp_path / "report.pdf").write_bytes(PDF)
    doc = td.File.from_path(tmp_path / "report.pdf")
    assert doc.filename == "report.pdf" and doc.mime_type == "application/pdf"
    assert doc.file_data == f"data:application/pdf;base64,{PDF_B64}"
    (tmp_path / "blob").write_bytes(b"\x00\x01")
    assert td.File.from_path(tmp_path / "blob").mime_type == "application/octet-stream"
    named = td.File.from_path(tmp_path / "blob", filename="x.bin", mime_type="application/x-y")
    assert (named.filename, named.mime_type) == ("x.bin", "application/x-y")


def test_from_path_refuses_a_file_over_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.pdf"
    with path.open("wb") as f:
        f.truncate(4096)
    with pytest.raises(MediaTooLargeError, match="td.File.from_path"):
        td.File.from_path(path, max_bytes=100)


def test_a_file_needs_data_an_id_or_a_name_and_data_must_be_a_data_url() -> None:
    with pytest.raises(ValueError, match="from_path"):
        td.File()
    with pytest.raises(ValueError, match="data: URL"):
        td.File("/etc/passwd")
    with pytest.raises(ValueError, match="base64"):
        td.File("data:application/pdf;base64,***")
    assert td.File(filename="x.pdf").filename == "x.pdf"


def test_file_can_only_be_an_input_and_resolves_in_string_signatures() -> None:
    assert td.make_signature("doc: td.File -> s").input_fields["doc"].annotation is td.File
    with pytest.raises(SignatureError, match="input"):
        td.make_signature("s -> doc: File")


async def test_a_file_in_a_text_field_is_refused() -> None:
    doc = td.File.from_bytes(PDF, "a.pdf", "application/pdf")
    with td.context(lm=DummyLM([{"s": "x"}])), pytest.raises(SignatureError, match="td.File"):
        await td.Predict("context: dict[str, str] -> s")(context={"a": doc})


def test_saved_demos_keep_their_files(tmp_path: Path) -> None:
    program = td.Predict(Summarize)
    doc = td.File.from_bytes(PDF, "a.pdf", "application/pdf")
    program.demos = [td.Example(doc=doc, summary="short")]
    program.save(tmp_path / "p.json")
    loaded = td.Predict(Summarize)
    loaded.load(tmp_path / "p.json")
    assert loaded.demos[0]["doc"] == doc
