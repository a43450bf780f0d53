"""OTLP/HTTP exporter with the JSON encoding, and the encoder it uses.

The body is an ``ExportTraceServiceRequest`` in OTLP's JSON mapping of
protobuf: lowerCamelCase keys; ``traceId`` / ``spanId`` / ``parentSpanId`` as
hex strings (not base64); enums (``kind``, ``status.code``) as integers;
64-bit integers (``*UnixNano``, ``intValue``) as decimal strings. It is POSTed
with ``Content-Type: application/json`` to ``{endpoint}/v1/traces``.

Retries follow the OTLP/HTTP rules: 429, 502, 503 and 504 (and connection
failures or timeouts) are retried with exponential backoff and jitter,
waiting as long as a ``Retry-After`` header asks; every other status fails
the batch at once.
"""

from __future__ import annotations

import base64
import functools
import importlib.metadata
import json
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import trio

from ..http.client import redact_url
from ..http.headers import parse_retry_after
from ..logs import get_logger
from .span import Span, StatusCode

__all__ = ["OtlpExportError", "OtlpHttpExporter", "encode_spans"]

_log = get_logger(__name__)

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


class OtlpExportError(Exception):
    """A batch could not be delivered to the OTLP endpoint (the collector counts it)."""


@functools.cache
def _version() -> str:
    try:
        return importlib.metadata.version("trio_dspy")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def _any_value(value: Any) -> dict[str, Any]:
    """Encode a Python value as an OTLP ``AnyValue`` in the JSON mapping."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        if math.isfinite(value):
            return {"doubleValue": value}
        # proto3 JSON spells the non-finite doubles as strings.
        spelled = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
        return {"doubleValue": spelled}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bytes | bytearray):
        return {"bytesValue": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": _key_values(value)}}
    if isinstance(value, Sequence):
        return {"arrayValue": {"values": [_any_value(item) for item in value]}}
    return {"stringValue": str(value)}


def _key_values(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {"key": str(key), "value": _any_value(value)}
        for key, value in attributes.items()
        if value is not None
    ]


def _span(span: Span) -> dict[str, Any]:
    end = span.end_ns if span.end_ns is not None else span.start_ns
    data: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": span.name,
        "kind": span.kind.value,
        "startTimeUnixNano": str(span.start_ns),
        "endTimeUnixNano": str(end),
        "attributes": _key_values(span.attributes),
        "events": [
            {
                "timeUnixNano": str(event.time_ns),
                "name": event.name,
                "attributes": _key_values(event.attributes),
            }
            for event in span.events
        ],
        "status": {"code": span.status.code.value},
    }
    if span.parent_id is not None:
        data["parentSpanId"] = span.parent_id
    if span.status.code is StatusCode.ERROR and span.status.description:
        data["status"]["message"] = span.status.description
    return data


def encode_spans(
    spans: Sequence[Span],
    service_name: str = "trio_dspy",
    resource_attributes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the OTLP/JSON ``ExportTraceServiceRequest`` for ``spans``.

    ``service.name`` and the ``telemetry.sdk.*`` attributes describe the
    resource; ``resource_attributes`` adds to (or overrides) them.
    """
    resource = {
        "service.name": service_name,
        "telemetry.sdk.name": "trio_dspy",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": _version(),
        **(resource_attributes or {}),
    }
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _key_values(resource)},
                "scopeSpans": [
                    {
                        "scope": {"name": "trio_dspy", "version": _version()},
                        "spans": [_span(span) for span in spans],
                    }
                ],
            }
        ]
    }


class OtlpHttpExporter:
    """Sends span batches to an OpenTelemetry collector over OTLP/HTTP with JSON bodies.

    ``endpoint`` is the collector's base URL (``http://127.0.0.1:4318``);
    ``/v1/traces`` is appended unless it is already there. ``headers`` (e.g.
    an ``Authorization`` token) are sent with every request and never appear
    in logs, reprs or error messages. ``timeout`` bounds each attempt
    (``None``: no bound);
    ``max_retries`` more attempts follow a retryable failure, waiting
    ``Retry-After`` or an exponential backoff (``backoff`` doubling per
    attempt, with jitter, at most ``max_backoff`` seconds). A ``Retry-After``
    longer than ``max_backoff`` fails the batch instead of stalling the
    drain task.

    The HTTP client is created lazily inside the running trio loop, recreated
    in a later ``trio.run`` and closed by :meth:`aclose`.
    """

    def __init__(
        self,
        endpoint: str,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = 10.0,
        max_retries: int = 3,
        service_name: str = "trio_dspy",
        *,
        resource_attributes: Mapping[str, Any] | None = None,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        endpoint = endpoint.rstrip("/")
        self.url = endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"
        # What messages, logs and reprs show: the URL without any user:password@.
        self._public_url = str(redact_url(httpx.URL(self.url)))
        self._headers = dict(headers or {})
        self.timeout = timeout
        self.max_retries = max_retries
        self.service_name = service_name
        self.resource_attributes = dict(resource_attributes or {})
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._client_token: trio.lowlevel.TrioToken | None = None
        self._random = random.Random()

    def __repr__(self) -> str:
        names = ", ".join(sorted(self._headers))
        return f"<OtlpHttpExporter url={self._public_url!r} headers=[{names}] (values hidden)>"

    def _get_client(self) -> httpx.AsyncClient:
        token = trio.lowlevel.current_trio_token()
        if self._client is None or self._client_token is not token:
            # A client from an earlier trio.run holds that run's sockets; let
            # it go rather than touching them from this run.
            # Each attempt is bounded as a whole below (httpx's timeout is per phase).
            self._client = httpx.AsyncClient(timeout=self.timeout, transport=self._transport)
            self._client_token = token
        return self._client

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Seconds to wait before retry number ``attempt + 1``.

        Raises:
            OtlpExportError: the server asked for a longer wait than ``max_backoff``.
        """
        if response is not None:
            asked = parse_retry_after(response.headers)
            if asked is not None:
                if asked > self.max_backoff:
                    raise OtlpExportError(
                        f"{self._public_url} asked to retry after {asked:.0f}s "
                        f"(more than max_backoff={self.max_backoff}s); batch dropped"
                    )
                return asked
        ceiling: float = min(self.max_backoff, self.backoff * 2.0**attempt)
        return ceiling * self._random.uniform(0.5, 1.0)

    async def export(self, spans: Sequence[Span]) -> None:
        """POST ``spans`` as one OTLP/JSON request, retrying as OTLP/HTTP prescribes.

        Raises:
            OtlpExportError: a non-retryable status, or retries exhausted.
        """
        if not spans:
            return
        body = json.dumps(
            encode_spans(spans, self.service_name, self.resource_attributes),
            separators=(",", ":"),
            allow_nan=False,
        ).encode()
        headers = {**self._headers, "Content-Type": "application/json"}
        client = self._get_client()
        for attempt in range(self.max_retries + 1):
            response: httpx.Response | None = None
            try:
                with trio.move_on_after(self.timeout if self.timeout is not None else math.inf):
                    response = await client.post(self.url, content=body, headers=headers)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}"
            else:
                if response is None:  # the whole attempt took longer than timeout
                    problem = f"no answer within {self.timeout:g}s"
                else:
                    if response.is_success:
                        self._check_partial_success(response, len(spans))
                        return
                    problem = f"HTTP {response.status_code}"
                    if response.status_code not in RETRYABLE_STATUSES:
                        raise OtlpExportError(
                            f"{self._public_url} rejected {len(spans)} spans: "
                            f"{problem} {response.text[:200]!r}"
                        )
            if attempt == self.max_retries:
                break
            delay = self._delay(attempt, response)
            _log.debug(
                "otlp export retry",
                url=self._public_url,
                problem=problem,
                attempt=attempt + 1,
                delay=delay,
            )
            await trio.sleep(delay)
        raise OtlpExportError(
            f"{self._public_url}: {len(spans)} spans not delivered after "
            f"{self.max_retries + 1} attempts (last: {problem})"
        )

    def _check_partial_success(self, response: httpx.Response, sent: int) -> None:
        """Log (never retry) a ``partialSuccess`` the server reports."""
        try:
            partial = response.json().get("partialSuccess") or {}
            rejected = int(partial.get("rejectedSpans", 0) or 0)
        except (ValueError, AttributeError, TypeError):
            return
        if rejected or partial.get("errorMessage"):
            _log.warning(
                "otlp partial success",
                url=self._public_url,
                sent=sent,
                rejected=rejected,
                message=str(partial.get("errorMessage", ""))[:200],
            )

    async def aclose(self) -> None:
        """Close the HTTP client (a new one is made if the exporter is used again)."""
        client, token = self._client, self._client_token
        self._client = self._client_token = None
        if client is not None and token is trio.lowlevel.current_trio_token():
            await client.aclose()
