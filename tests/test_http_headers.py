"""Request headers are checked before anything is sent, once per distinct line.

The transport checks each header name and value as h11 would (h11 is then
told they are checked): a line break or a NUL in a value, or a name that is
not a token, refuses the request before a byte goes out, and the message
never quotes the value (it may be a key).
"""

from __future__ import annotations

import httpx
import pytest

from trio_dspy.http.connection import valid_headers
from trio_dspy.http.transport import H11Transport
from trio_dspy.testing import serve_sim

BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'


def _headers(port: int, *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [
        (b"host", f"127.0.0.1:{port}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
        *extra,
    ]


@pytest.mark.parametrize(
    "bad",
    [
        (b"authorization", b"Bearer sk-secret\r\nx-injected: 1"),
        (b"authorization", b"Bearer sk-secret\nx"),
        (b"x-trace", b"a\x00b"),
        (b"bad name", b"value"),
        (b"x-padded", b" sk-secret"),
    ],
)
async def test_a_header_h11_would_refuse_is_refused_before_sending(
    bad: tuple[bytes, bytes],
) -> None:
    async with serve_sim() as sim:
        transport = H11Transport()
        url = httpx.URL(f"{sim.base_url}/chat/completions")
        with pytest.raises(httpx.LocalProtocolError) as refused:
            await transport.request(b"POST", url, _headers(sim.port, bad), BODY)
        await transport.aclose()
        assert "sk-secret" not in str(refused.value)
        assert sim.stats.requests == 0


async def test_the_same_good_headers_go_out_request_after_request() -> None:
    async with serve_sim() as sim:
        transport = H11Transport()
        url = httpx.URL(f"{sim.base_url}/chat/completions")
        extra = (b"authorization", b"Bearer key\twith tab")  # inner tabs are allowed
        for _ in range(3):
            response = await transport.request(b"POST", url, _headers(sim.port, extra), BODY)
            assert response.status == 200
        await transport.aclose()
        assert sim.stats.requests == 3


def test_a_checked_line_is_not_checked_into_a_bad_one() -> None:
    good = (b"x-key", b"abc")
    assert valid_headers([good]) == [good]
    with pytest.raises(httpx.LocalProtocolError):
        valid_headers([good, (b"x-key", b"abc\r\n")])
