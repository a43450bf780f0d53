"""td.Audio inputs: built from bytes and files, sent as input_audio parts, never shown as data."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

import trio_dspy as td
from trio_dspy.errors import MediaTooLargeError, PartUnsupportedError, SignatureError
from trio_dspy.lm import LMRequest, Message
from trio_dspy.lm.cache import cache_key
from trio_dspy.lm.history import format_history
from trio_dspy.messages import TextPart, loggable
from trio_dspy.telemetry import InMemoryExporter, collect
from trio_dspy.testing import DummyLM, serve_sim

from .test_image import sim_lm

WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 20
WAV_B64 = base64.b64encode(WAV).decode()


class Transcribe(td.Signature):
    """Transcribe the recording."""

    clip: td.Audio = td.InputField()
    text: str = td.OutputField()


@pytest.mark.parametrize("adapter", [td.ChatAdapter(), td.JSONAdapter(), td.XMLAdapter()])
async def test_audio_arrives_as_an_openai_input_audio_part_between_texts(
    adapter: td.Adapter,
) -> None:
    async with serve_sim() as sim, sim_lm(sim, "openai") as lm:
        with td.context(lm=lm, adapter=adapter):
            pred = await td.Predict(Transcribe)(clip=td.Audio.from_bytes(WAV))
    assert isinstance(pred.text, str) and pred.text
    parts = sim.content_parts()
    assert [p["type"] for p in parts] == ["text", "input_audio", "text"]
    assert parts[1]["input_audio"] == {"data": WAV_B64, "format": "wav"}


async def test_anthropic_refuses_audio_before_sending_naming_the_fix() -> None:
    async with serve_sim() as sim, sim_lm(sim, "anthropic") as lm:
        with td.context(lm=lm), pytest.raises(PartUnsupportedError, match="no audio input"):
            await td.Predict(Transcribe)(clip=td.Audio.from_bytes(WAV))
    assert not sim.requests


async def test_a_list_of_audio_clips_arrives_in_order() -> None:
    sig = td.make_signature("clips: list[td.Audio] -> count: int")
    clips = [td.Audio.from_bytes(b"one", "mp3"), td.Audio.from_bytes(b"two", "wav")]
    async with serve_sim() as sim, sim_lm(sim, "openai") as lm:
        with td.context(lm=lm):
            await td.Predict(sig)(clips=clips)
    audio = [p["input_audio"] for p in sim.content_parts() if p["type"] == "input_audio"]
    assert audio == [
        {"data": base64.b64encode(b"one").decode(), "format": "mp3"},
        {"data": base64.b64encode(b"two").decode(), "format": "wav"},
    ]


def test_string_signatures_resolve_audio_by_name_and_with_the_td_prefix() -> None:
    assert td.make_signature("clip: Audio -> text").input_fields["clip"].annotation is td.Audio
    assert td.make_signature("clip: td.Audio -> text").input_fields["clip"].annotation is td.Audio


def test_audio_can_only_be_an_input() -> None:
    with pytest.raises(SignatureError, match="input"):
        td.make_signature("text -> clip: Audio")
    with pytest.raises(SignatureError, match="input"):
        td.make_signature("clips: dict[str, Audio] -> text")


async def test_audio_in_a_text_field_is_refused_before_anything_is_sent() -> None:
    sig = td.make_signature("notes: list[str] -> text")
    with (
        td.context(lm=DummyLM([{"text": "x"}])),
        pytest.raises(SignatureError, match=r"notes\[1\]") as caught,
    ):
        await td.Predict(sig)(notes=["a", td.Audio.from_bytes(WAV)])
    assert WAV_B64[:40] not in str(caught.value)


# ------------------------------------------------ where the data never shows
def test_reprs_show_the_size_never_the_data() -> None:
    clip = td.Audio.from_bytes(WAV)
    assert repr(clip) == f"Audio(data=<AUDIO_BASE_64_ENCODED({len(WAV_B64)})>, audio_format='wav')"
    message = Message("user", (TextPart("a"), clip.part()))
    for shown in (repr(clip.part()), repr(message), message.text, json.dumps(loggable(message))):
        assert WAV_B64[:40] not in shown
    assert message.text == f"a[audio: wav, <{len(WAV_B64)} chars>]"


async def test_spans_and_history_hold_no_audio_data() -> None:
    exporter = InMemoryExporter()
    lm = DummyLM([{"text": "hello"}])
    async with collect(exporter):
        with td.context(lm=lm, trace_content=True):
            await td.Predict(Transcribe)(clip=td.Audio.from_bytes(WAV))
    recorded = str(next(s for s in exporter.spans if s.name.startswith("chat")).attributes)
    assert WAV_B64[:40] not in recorded
    assert f"<{len(WAV_B64)} chars>" in recorded
    history = format_history(1, lm)
    assert "[audio: wav," in history and WAV_B64[:40] not in history


def test_the_cache_key_hashes_the_audio() -> None:
    def key(clip: td.Audio) -> str:
        message = Message("user", (TextPart("Transcribe"), clip.part()))
        return cache_key("openai", "m", "http://a/v1", LMRequest([message]))

    same = key(td.Audio.from_bytes(WAV))
    assert same == key(td.Audio.from_bytes(WAV))
    assert same != key(td.Audio.from_bytes(WAV + b"\x00"))
    assert same != key(td.Audio.from_bytes(WAV, "mp3"))
    assert len(same) == 64 and WAV_B64[:40] not in same


# --------------------------------------------------------------- construction
def test_from_path_reads_the_bytes_and_the_format_from_the_name(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(WAV)
    (tmp_path / "a.mp3").write_bytes(b"ID3")
    assert td.Audio.from_path(tmp_path / "a.wav") == td.Audio(WAV_B64, "wav")
    # audio/mpeg is an .mp3 file's type; OpenAI's input_audio names it mp3.
    assert td.Audio.from_path(tmp_path / "a.mp3").audio_format == "mp3"
    assert td.Audio.from_file(tmp_path / "a.wav").data == WAV_B64
    (tmp_path / "noext").write_bytes(WAV)
    with pytest.raises(ValueError, match="audio_format="):
        td.Audio.from_path(tmp_path / "noext")
    assert td.Audio.from_path(tmp_path / "noext", "wav").audio_format == "wav"


def test_from_path_refuses_a_file_over_the_limit_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "big.wav"
    with path.open("wb") as f:
        f.truncate(2048)
    with pytest.raises(MediaTooLargeError, match="max_bytes") as caught:
        td.Audio.from_path(path, max_bytes=1024)
    assert caught.value.size == 2048 and caught.value.path == str(path)
    with pytest.raises(MediaTooLargeError):
        td.Audio.from_bytes(b"x" * 11, max_bytes=10)


def test_formats_are_normalised_as_dspy_does_and_bad_data_is_refused() -> None:
    assert td.Audio(WAV_B64, "x-wav").audio_format == "wav"
    assert td.Audio.from_data_url(f"data:audio/x-wav;base64,{WAV_B64}") == td.Audio(WAV_B64, "wav")
    with pytest.raises(ValueError, match="base64"):
        td.Audio("not base64!", "wav")
    with pytest.raises(ValueError, match="audio_format"):
        td.Audio(WAV_B64, "wav; rm -rf")
    with pytest.raises(ValueError, match="from_bytes"):
        td.Audio.from_url("https://example.com/a.wav")
    with pytest.raises(ValueError, match="empty"):
        td.Audio.from_bytes(b"")


def test_saved_demos_keep_their_audio(tmp_path: Path) -> None:
    program = td.Predict(Transcribe)
    clip = td.Audio.from_bytes(WAV)
    program.demos = [td.Example(clip=clip, text="hello")]
    program.save(tmp_path / "p.json")
    loaded = td.Predict(Transcribe)
    loaded.load(tmp_path / "p.json")
    assert loaded.demos[0]["clip"] == clip


def test_dspys_keyword_constructors_work_and_its_prefix_names_ours() -> None:
    assert td.Audio(data=WAV_B64, audio_format="wav") == td.Audio.from_bytes(WAV)
    with pytest.raises(ValueError, match="from_data_url"):
        td.Audio(f"data:audio/wav;base64,{WAV_B64}", "wav")
    with pytest.raises(SignatureError, match="'td.Audio'"):
        td.make_signature("clip: dspy.Audio -> text")
