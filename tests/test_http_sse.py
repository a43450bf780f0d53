"""The event-stream parser: the WHATWG rules, and any split of the bytes gives the same events."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trio_dspy.http.sse import MAX_RETRY_MS, SSEDecoder, SSEEvent


def parse(*pieces: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return [event for piece in pieces for event in decoder.feed(piece)]


def test_data_lines_join_with_newlines_and_the_type_defaults_to_message() -> None:
    assert parse(b"data: a\ndata:b\ndata\n\n") == [SSEEvent("a\nb\n")]


def test_event_type_and_last_id_carry_over() -> None:
    events = parse(b"event: delta\nid: 7\ndata: x\n\ndata: y\n\n")
    assert events == [SSEEvent("x", "delta", "7"), SSEEvent("y", "message", "7")]


def test_comments_unknown_fields_and_data_less_events_dispatch_nothing() -> None:
    assert parse(b": ping\n\nevent: lonely\n\nfoo: bar\n\n") == []


def test_cr_lf_and_crlf_all_end_lines() -> None:
    assert parse(b"data: a\r\rdata: b\n\ndata: c\r\n\r\n") == [
        SSEEvent("a"),
        SSEEvent("b"),
        SSEEvent("c"),
    ]


def test_a_crlf_split_between_pieces_is_one_line_end() -> None:
    assert parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == [SSEEvent("a\nb")]


def test_a_line_and_a_character_split_between_pieces() -> None:
    body = "data: héllo\n\n".encode()
    assert parse(body[:8], body[8:]) == [SSEEvent("héllo")]


def test_a_final_event_without_blank_line_is_dropped() -> None:
    assert parse(b"data: kept\n\ndata: dropped\n") == [SSEEvent("kept")]


def test_retry_takes_only_digits_and_id_with_nul_is_ignored() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"retry: 1500\nretry: 2x\nid: a\x00b\ndata: z\n\n")
    assert decoder.retry == 1500
    assert decoder.feed(b"data: w\n\n") == [SSEEvent("w")]


def test_a_retry_of_thousands_of_digits_is_capped_not_an_error() -> None:
    decoder = SSEDecoder()
    body = b"retry: " + b"9" * 5000 + b"\ndata: x\n\n"
    assert decoder.feed(body) == [SSEEvent("x")]
    assert decoder.retry == MAX_RETRY_MS
    decoder.feed(b"retry: " + b"0" * 5000 + b"1500\n")
    assert decoder.retry == 1500  # leading zeros are still a number
    decoder.feed(b"retry: \xd9\xa1\n")  # a non-ASCII digit: ignored, as WHATWG says
    assert decoder.retry == 1500


def test_a_leading_byte_order_mark_is_dropped() -> None:
    assert parse(b"\xef\xbb", b"\xbfdata: x\n\n") == [SSEEvent("x")]


def test_one_space_after_the_colon_is_dropped_not_more() -> None:
    assert parse(b"data:  two\n\n") == [SSEEvent(" two")]


_values = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=8
)
_endings = st.sampled_from(["\n", "\r", "\r\n"])


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A body of random events, comments and fields, each line with a random line end."""
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        for _ in range(draw(st.integers(0, 4))):
            field = draw(st.sampled_from(["data", "event", "id", "retry", ":", "x"]))
            lines.append(f"{field}: {draw(_values)}" if field != ":" else f": {draw(_values)}")
        lines.append("")
    text = "".join(line + draw(_endings) for line in lines)
    return text.encode()


@given(bodies(), st.lists(st.integers(0, 10_000), max_size=12))
def test_any_split_of_the_bytes_gives_the_same_events(body: bytes, cuts: list[int]) -> None:
    points = sorted({c % (len(body) + 1) for c in cuts})
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    whole = SSEDecoder()
    split = SSEDecoder()
    assert parse(*pieces) == parse(body)
    whole.feed(body)
    for piece in pieces:
        split.feed(piece)
    assert split.retry == whole.retry
