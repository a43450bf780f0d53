"""td.serving.app driven in-process: routes, typing, limits, errors, deadlines, hang-ups, traces."""

from __future__ import annotations

import enum
import functools
import json
import logging
from typing import Any

import pytest
import trio
import trio.testing

import trio_dspy as td
from trio_dspy.demo.coffee_shop import CoffeeShopAgent
from trio_dspy.testing import DummyLM
from trio_dspy.testing.sim_config import Fault, Latency, SimConfig
from trio_dspy.testing.sim_server import serve_sim

from .asgi_client import Response, request


class Size(enum.Enum):
    small = "small"
    large = "large"


class Order(td.Signature):
    """Take a coffee order."""

    request: str = td.InputField(desc="what the customer said")
    size: Size = td.InputField()
    shots: int = td.InputField()
    drinks: list[str] = td.OutputField(desc="the drinks to make")
    price: float = td.OutputField()
    reply: str = td.OutputField()


ANSWER = {"drinks": ["latte", "mocha"], "price": 8.5, "reply": "Two drinks coming up!"}


def order_app(**kwargs: Any) -> td.serving.ServingApp:
    return td.serving.app({"order": td.Predict(Order)}, **kwargs)


def slow_lm(seconds: float) -> DummyLM:
    return DummyLM([ANSWER], cycle=True, latency=seconds)


BODY = {"request": "two please", "size": "large", "shots": 2}


# ------------------------------------------------------------ round trips
async def test_a_call_turns_json_inputs_into_typed_arguments_and_typed_outputs_into_json() -> None:
    lm = DummyLM([ANSWER])
    with td.context(lm=lm):
        response = await request(order_app(), "POST", "/programs/order", json_body=BODY)
    assert response.status == 200
    body = response.json()
    assert body["outputs"] == ANSWER
    assert body["usage"]["requests"] == 1 and body["usage"]["total_tokens"] > 0
    assert body["request_id"] == response.headers["x-request-id"]
    # The enum and the int reached the model as their types' values.
    prompt = lm.requests[0].messages[-1].content
    assert "large" in prompt and "2" in prompt


async def test_a_single_module_is_served_as_program() -> None:
    with td.context(lm=DummyLM([ANSWER])):
        app = td.serving.app(td.Predict(Order))
        response = await request(app, "POST", "/programs/program", json_body=BODY)
    assert response.status == 200 and response.json()["outputs"]["price"] == 8.5


async def test_the_callers_request_id_is_kept_and_a_bad_one_replaced() -> None:
    with td.context(lm=DummyLM([ANSWER], cycle=True)):
        app = order_app()
        kept = await request(
            app, "POST", "/programs/order", json_body=BODY, headers={"x-request-id": "abc-123"}
        )
        replaced = await request(
            app, "POST", "/programs/order", json_body=BODY, headers={"x-request-id": "a b\n<c>"}
        )
    assert kept.json()["request_id"] == "abc-123"
    assert replaced.json()["request_id"] not in ("a b\n<c>", "")


# ------------------------------------------------------------ description
async def test_programs_lists_each_programs_input_and_output_json_schemas() -> None:
    app = td.serving.app({"order": td.Predict(Order), "shop": CoffeeShopAgent()})
    body = (await request(app, "GET", "/programs")).json()["programs"]
    order = body["order"]
    assert order["input_schema"]["required"] == ["request", "size", "shots"]
    assert order["input_schema"]["properties"]["size"]["enum"] == ["small", "large"]
    assert order["input_schema"]["additionalProperties"] is False
    assert order["output_schema"]["properties"]["drinks"] == {
        "type": "array",
        "items": {"type": "string"},
        "description": "the drinks to make",
    }
    assert order["instructions"] == "Take a coffee order."
    # A module with forward(**inputs) is served with the signature of the agent it wraps.
    shop = body["shop"]
    assert list(shop["input_schema"]["properties"]) == ["request", "mood"]
    assert list(shop["output_schema"]["properties"]) == ["action", "reply"]


class TwoSteps(td.Module):
    def __init__(self) -> None:
        self.draft = td.Predict("topic -> draft")
        self.polish = td.Predict("draft, tone -> text")

    async def forward(self, topic: str, times: int = 1, tone: str = "warm") -> td.Prediction:
        draft = await self.draft(topic=topic * times)
        return await self.polish(draft=draft.draft, tone=tone)


async def test_a_module_whose_forward_names_its_parameters_takes_those_as_inputs() -> None:
    app = td.serving.app({"two": TwoSteps()})
    schema = (await request(app, "GET", "/programs")).json()["programs"]["two"]["input_schema"]
    assert schema["properties"]["times"] == {"type": "integer", "default": 1}
    assert schema["required"] == ["topic"]
    with td.context(lm=DummyLM([{"draft": "d"}, {"text": "done"}])):
        response = await request(app, "POST", "/programs/two", json_body={"topic": "x"})
    assert response.status == 200 and response.json()["outputs"]["text"] == "done"


async def test_openapi_describes_every_program_route_with_its_schemas() -> None:
    doc = (
        await request(
            order_app(api_key="k"), "GET", "/openapi.json", headers={"authorization": "Bearer k"}
        )
    ).json()
    assert doc["openapi"].startswith("3.1")
    call = doc["paths"]["/programs/order"]["post"]
    schema = call["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["shots"]["type"] == "integer"
    assert {"401", "413", "422", "503", "504"} <= set(call["responses"])
    assert "/programs/order/stream" in doc["paths"]
    assert doc["security"] == [{"bearer": []}]


async def test_health_and_the_playground_need_no_key() -> None:
    app = order_app(api_key="k")
    health = await request(app, "GET", "/health")
    page = await request(app, "GET", "/")
    script = await request(app, "GET", "/playground.js")
    assert health.status == 200 and health.json()["status"] == "ok"
    assert page.status == 200 and b'<script src="playground.js">' in page.body
    assert script.status == 200 and b"programs/" in script.body


async def test_unknown_programs_and_routes_are_404_and_a_get_of_a_program_is_405() -> None:
    app = order_app()
    missing = await request(app, "POST", "/programs/nope", json_body={})
    assert missing.status == 404 and "order" in missing.json()["error"]["message"]
    assert (await request(app, "GET", "/elsewhere")).status == 404
    wrong = await request(app, "GET", "/programs/order")
    assert wrong.status == 405 and wrong.headers["allow"] == "POST"


# ------------------------------------------------------------ bad input
async def test_a_body_that_is_not_json_is_422() -> None:
    response = await request(order_app(), "POST", "/programs/order", content=b"{not json")
    assert response.status == 422
    assert response.json()["error"]["type"] == "invalid_json"


async def test_an_input_that_does_not_fit_is_422_naming_the_field() -> None:
    app = order_app()
    wrong_enum = await request(app, "POST", "/programs/order", json_body={**BODY, "size": "huge"})
    missing = await request(
        app, "POST", "/programs/order", json_body={"request": "x", "size": "small"}
    )
    unknown = await request(app, "POST", "/programs/order", json_body={**BODY, "sugar": 2})
    not_object = await request(app, "POST", "/programs/order", json_body=[1, 2])
    assert [r.status for r in (wrong_enum, missing, unknown, not_object)] == [422] * 4
    assert wrong_enum.json()["error"]["field"] == "size"
    assert "huge" in wrong_enum.json()["error"]["message"]
    assert missing.json()["error"]["field"] == "shots"
    assert unknown.json()["error"]["field"] == "sugar"
    assert not_object.json()["error"]["field"] == ""


async def test_a_nested_field_that_does_not_fit_is_named_by_its_path() -> None:
    app = td.serving.app({"p": td.Predict("orders: list[int] -> total: int")})
    response = await request(app, "POST", "/programs/p", json_body={"orders": [1, "two"]})
    assert response.status == 422
    assert response.json()["error"]["field"] == "orders[1]"


async def test_a_body_over_the_limit_is_413_before_it_is_read() -> None:
    app = order_app(max_body_bytes=100)
    declared = await request(
        app, "POST", "/programs/order", content=b"x" * 101
    )  # content-length says 101
    assert declared.status == 413
    assert declared.json()["error"]["type"] == "too_large"
    # Sent in chunks with no length: refused at the chunk that crosses the limit,
    # the rest never asked for.
    chunks = [b"x" * 60, b"x" * 60, b"x" * 10_000_000]
    chunked = await request(app, "POST", "/programs/order", chunks=chunks)
    assert chunked.status == 413


# ------------------------------------------------------------ auth
async def test_without_the_bearer_token_a_program_is_401() -> None:
    app = order_app(api_key="s3cret")
    with td.context(lm=DummyLM([ANSWER])):
        none = await request(app, "POST", "/programs/order", json_body=BODY)
        wrong = await request(
            app, "POST", "/programs/order", json_body=BODY, headers={"authorization": "Bearer nope"}
        )
        basic = await request(
            app,
            "POST",
            "/programs/order",
            json_body=BODY,
            headers={"authorization": "Basic s3cret"},
        )
        listing = await request(app, "GET", "/programs")
        right = await request(
            app,
            "POST",
            "/programs/order",
            json_body=BODY,
            headers={"authorization": "Bearer s3cret"},
        )
    assert [r.status for r in (none, wrong, basic, listing)] == [401] * 4
    assert none.headers["www-authenticate"] == "Bearer"
    assert b"s3cret" not in wrong.body
    assert right.status == 200
    assert "s3cret" not in repr(app)


# ------------------------------------------------------------ capacity
async def test_beyond_max_concurrency_a_request_is_503_at_once_with_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = order_app(max_concurrency=2)
    responses: list[Response] = []
    with td.context(lm=slow_lm(10)):
        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(_call_into, app, responses)
            await trio.testing.wait_all_tasks_blocked()
            assert app.in_flight == 2
            start = trio.current_time()
            refused = await request(app, "POST", "/programs/order", json_body=BODY)
            assert trio.current_time() == start  # not queued
    assert refused.status == 503 and refused.headers["retry-after"] == "1"
    assert [r.status for r in responses] == [200, 200]
    assert app.in_flight == 0
    with td.context(lm=slow_lm(0)):
        assert (await request(app, "POST", "/programs/order", json_body=BODY)).status == 200


async def _call_into(app: Any, out: list[Response]) -> None:
    out.append(await request(app, "POST", "/programs/order", json_body=BODY))


# ------------------------------------------------------------ deadlines and errors
async def test_a_program_past_its_deadline_is_cancelled_and_answered_504(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = order_app(request_timeout=2)
    with td.context(lm=slow_lm(60)):
        start = trio.current_time()
        response = await request(app, "POST", "/programs/order", json_body=BODY)
    assert trio.current_time() - start == 2
    assert response.status == 504
    error = response.json()["error"]
    assert error["type"] == "deadline" and error["request_id"] == response.headers["x-request-id"]
    assert app.in_flight == 0


async def test_a_client_may_ask_for_a_shorter_deadline_but_not_a_longer_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = order_app(request_timeout=5)
    with td.context(lm=slow_lm(60)):
        start = trio.current_time()
        shorter = await request(
            app, "POST", "/programs/order", json_body=BODY, headers={"x-request-timeout": "0.5"}
        )
        assert trio.current_time() - start == 0.5
        start = trio.current_time()
        longer = await request(
            app, "POST", "/programs/order", json_body=BODY, headers={"x-request-timeout": "100"}
        )
        assert trio.current_time() - start == 5
        bad = await request(
            app, "POST", "/programs/order", json_body=BODY, headers={"x-request-timeout": "-1"}
        )
    assert shorter.status == longer.status == 504
    assert bad.status == 400


class Broken(td.Module):
    async def forward(self, question: str) -> td.Prediction:
        await trio.lowlevel.checkpoint()
        raise RuntimeError("database password is hunter2")


async def test_a_failing_program_is_500_with_a_request_id_and_no_traceback() -> None:
    response = await request(
        td.serving.app({"b": Broken()}), "POST", "/programs/b", json_body={"question": "q"}
    )
    assert response.status == 500
    error = response.json()["error"]
    assert error["type"] == "internal" and error["request_id"]
    assert b"hunter2" not in response.body and b"Traceback" not in response.body


async def test_a_failing_language_model_server_is_502(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = SimConfig(faults=[Fault.parse("server_error")])
    async with serve_sim(config) as sim:
        lm = td.LM("openai/sim", base_url=sim.base_url, api_key="k", max_retries=1)
        async with lm:
            with td.context(lm=lm):
                response = await request(order_app(), "POST", "/programs/order", json_body=BODY)
    assert response.status == 502
    assert response.json()["error"]["type"] == "lm_unavailable"


async def test_an_unreachable_language_model_server_is_502(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve_sim() as sim:
        url = sim.base_url  # a port that is closed once the server stops
    lm = td.LM("openai/sim", base_url=url, api_key="k", max_retries=1)
    async with lm:
        with td.context(lm=lm):
            response = await request(order_app(), "POST", "/programs/order", json_body=BODY)
    assert response.status == 502


# ------------------------------------------------------------ streaming
async def test_the_stream_sends_field_chunks_then_the_typed_prediction() -> None:
    lm = DummyLM([ANSWER], stream_chunk=4)
    with td.context(lm=lm):
        response = await request(order_app(), "POST", "/programs/order/stream", json_body=BODY)
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = response.events()
    chunks = [data for kind, data in events if kind == "chunk"]
    assert len(chunks) > 1
    assert "".join(c["chunk"] for c in chunks if c["field"] == "reply") == ANSWER["reply"]
    assert {c["predictor"] for c in chunks} == {"self"}
    kind, final = events[-1]
    assert kind == "prediction" and final["outputs"] == ANSWER
    assert final["usage"]["requests"] == 1


async def test_chunks_reach_the_client_while_the_model_is_still_writing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lm = DummyLM([ANSWER], stream_chunk=2, stream_delay=1.0)
    response = Response()
    with td.context(lm=lm):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: request(
                    order_app(), "POST", "/programs/order/stream", json_body=BODY, response=response
                )
            )
            while b"event: chunk" not in response.body:
                await response.piece_arrived.wait()
            assert b"event: prediction" not in response.body
    assert response.events()[-1][0] == "prediction"


async def test_a_stream_past_its_deadline_ends_with_an_error_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with td.context(lm=slow_lm(60)):
        response = await request(
            order_app(request_timeout=1), "POST", "/programs/order/stream", json_body=BODY
        )
    kind, data = response.events()[-1]
    assert kind == "error" and data["status"] == 504 and data["error"]["type"] == "deadline"


async def test_a_stream_whose_deadline_passes_before_it_starts_is_a_plain_504(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with td.context(lm=slow_lm(60)):
        response = await request(
            order_app(request_timeout=1),
            "POST",
            "/programs/order/stream",
            json_body=BODY,
            start_delay=5,  # the deadline passes while the 200 waits to be sent
        )
    assert response.status == 504 and response.json()["error"]["type"] == "deadline"


# ------------------------------------------------------------ hang-ups
async def test_a_client_that_hangs_up_cancels_its_program_and_the_model_request(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_dspy")
    async with serve_sim(SimConfig(latency=Latency.parse("30"))) as sim:
        lm = td.LM("openai/sim", base_url=sim.base_url, api_key="k")
        app = order_app(max_concurrency=1)
        async with lm:
            with td.context(lm=lm):
                for path in ("/programs/order", "/programs/order/stream"):
                    hang_up = trio.Event()
                    response = Response()
                    async with trio.open_nursery() as nursery:
                        call = functools.partial(
                            request,
                            app,
                            "POST",
                            path,
                            json_body=BODY,
                            hang_up=hang_up,
                            response=response,
                        )
                        nursery.start_soon(call)
                        # The server runs in this same trio run: poll its counter.
                        while sim.stats.in_flight == 0:  # noqa: ASYNC110
                            await trio.sleep(0.01)
                        start = trio.current_time()
                        hang_up.set()
                    assert trio.current_time() - start < 1  # not the model's 30 s
                    await trio.testing.wait_all_tasks_blocked()
                    assert sim.stats.in_flight == 0 and sim.stats.ok == 0
                    assert app.in_flight == 0  # the slot is free again
                    assert b"event: prediction" not in response.body
                assert sim.http is not None and sim.http.requests_abandoned == 2
    assert caplog.text.count("serving.client_gone") == 2


# ------------------------------------------------------------ traces
async def test_a_traceparent_joins_the_callers_trace_and_reaches_the_model() -> None:
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    exporter = td.telemetry.InMemoryExporter()
    async with serve_sim() as sim, td.telemetry.collect(exporter):
        lm = td.LM("openai/sim", base_url=sim.base_url, api_key="k")
        async with lm:
            with td.context(lm=lm):
                response = await request(
                    order_app(),
                    "POST",
                    "/programs/order",
                    json_body=BODY,
                    headers={"traceparent": f"00-{trace_id}-{parent}-01"},
                )
                own = await request(order_app(), "POST", "/programs/order", json_body=BODY)
        sent = [h["traceparent"] for h in sim.request_headers]
    assert response.status == 200 and response.json()["trace_id"] == trace_id
    root = next(
        s for s in exporter.spans if s.name == "POST /programs/order" and s.trace_id == trace_id
    )
    assert root.parent_id == parent
    assert root.attributes["trio_dspy.request.id"] == response.json()["request_id"]
    assert sent[0].startswith(f"00-{trace_id}-")
    # Without the header a request is a trace of its own.
    assert own.json()["trace_id"] != trace_id and not sent[1].startswith(f"00-{trace_id}-")


async def test_a_malformed_traceparent_starts_a_new_trace() -> None:
    exporter = td.telemetry.InMemoryExporter()
    async with td.telemetry.collect(exporter):
        with td.context(lm=DummyLM([ANSWER])):
            response = await request(
                order_app(),
                "POST",
                "/programs/order",
                json_body=BODY,
                headers={"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"},
            )
    assert response.status == 200
    root = next(s for s in exporter.spans if s.name == "POST /programs/order")
    assert root.parent_id is None and root.trace_id != "0" * 32


# ------------------------------------------------------------ construction
def test_bad_settings_and_programs_are_refused_when_the_app_is_made() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        order_app(max_concurrency=0)
    with pytest.raises(ValueError, match="request_timeout"):
        order_app(request_timeout=-1)
    with pytest.raises(ValueError, match="max_body_bytes"):
        order_app(max_body_bytes=0)
    with pytest.raises(ValueError, match="URL"):
        td.serving.app({"a/b": td.Predict(Order)})
    with pytest.raises(TypeError, match="td.Module"):
        td.serving.app({"x": object()})  # type: ignore[dict-item]

    class Opaque(td.Module):
        async def forward(self, **inputs: Any) -> Any:
            return inputs

    with pytest.raises(td.errors.SignatureError, match=r"self\.signature"):
        td.serving.app({"o": Opaque()})


# ------------------------------------------------------------ text policy
class Echo(td.Module):
    async def forward(self, text: str) -> td.Prediction:
        await trio.lowlevel.checkpoint()
        return td.Prediction(echo=text, raw="\ud800 made by the program")


async def test_lone_surrogates_in_inputs_and_outputs_become_replacement_characters() -> None:
    body = b'{"text": "a\\ud800b"}'
    response = await request(td.serving.app({"e": Echo()}), "POST", "/programs/e", content=body)
    assert response.status == 200
    outputs = json.loads(response.body.decode("utf-8"))["outputs"]  # strict UTF-8
    assert outputs == {"echo": "a\ufffdb", "raw": "\ufffd made by the program"}


# ------------------------------------------------------------ traceparent parsing
def test_an_incoming_traceparent_is_read_as_the_w3c_spec_says() -> None:
    from trio_dspy.telemetry.propagation import parse_traceparent

    tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    assert parse_traceparent(f"00-{tid}-{sid}-01") == (tid, sid)
    assert parse_traceparent(f" 00-{tid}-{sid}-00 ") == (tid, sid)
    # A later version may append fields; version 00 may not.
    assert parse_traceparent(f"01-{tid}-{sid}-01-extra") == (tid, sid)
    for bad in (
        None,
        "",
        f"00-{tid}-{sid}-01-extra",
        f"ff-{tid}-{sid}-01",
        f"00-{'0' * 32}-{sid}-01",
        f"00-{tid}-{'0' * 16}-01",
        f"00-{tid.upper()}-{sid}-01",
        f"00-{tid[:-1]}-{sid}-01",
        "garbage",
    ):
        assert parse_traceparent(bad) is None, bad


# ------------------------------------------------------------ testing an app
async def test_httpx_asgi_transport_drives_the_app_in_process_on_trio() -> None:
    import httpx

    with td.context(lm=DummyLM([ANSWER], cycle=True)):
        transport = httpx.ASGITransport(app=order_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            reply = await client.post("/programs/order", json=BODY)
            streamed = await client.post("/programs/order/stream", json=BODY)
    assert reply.status_code == 200 and reply.json()["outputs"] == ANSWER
    assert streamed.text.rstrip().split("\n")[-2] == "event: prediction"
