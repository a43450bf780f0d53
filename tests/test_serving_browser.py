"""The playground in a real browser: a form from the schema, streamed text, the typed prediction."""

from __future__ import annotations

import enum
import functools
import json
import time
from typing import Any

import pytest
import trio

import trio_dspy as td
from trio_dspy.serving.run import SERVERS, serve
from trio_dspy.testing import DummyLM

from .browser_fixture import headless_chromium

pytest.importorskip("hypercorn")


class Size(enum.Enum):
    small = "small"
    large = "large"


class Order(td.Signature):
    """Take a coffee order."""

    request: str = td.InputField(desc="what the customer said")
    size: Size = td.InputField()
    shots: int = td.InputField()
    drinks: list[str] = td.OutputField()
    reply: str = td.OutputField()


REPLY = "One large latte with two shots, coming right up!"


def drive_the_playground(url: str, screenshot: str | None) -> dict[str, Any]:
    """Fill the form, run, and record what the page showed while streaming and at the end."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = headless_chromium()
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 20)
        wait.until(lambda d: d.find_elements(By.ID, "input-request"))
        programs = [o.text for o in Select(driver.find_element(By.ID, "program")).options]
        sizes = [o.text for o in Select(driver.find_element(By.ID, "input-size")).options]
        driver.find_element(By.ID, "input-request").send_keys("a large latte, two shots")
        Select(driver.find_element(By.ID, "input-size")).select_by_visible_text("large")
        driver.find_element(By.ID, "input-shots").send_keys("2")
        driver.find_element(By.ID, "run").click()
        # Watch the reply grow: some text before the prediction has arrived.
        partial = ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            boxes = driver.find_elements(By.CSS_SELECTOR, "pre.streamed[data-field=reply]")
            text = boxes[0].text if boxes else ""
            if text and not driver.find_element(By.ID, "prediction").text:
                partial = text
                break
            time.sleep(0.02)
        wait.until(lambda d: d.find_element(By.ID, "prediction").text)
        if screenshot:
            driver.save_screenshot(screenshot)
        return {
            "programs": programs,
            "sizes": sizes,
            "partial": partial,
            "streamed": driver.find_element(By.CSS_SELECTOR, "pre.streamed[data-field=reply]").text,
            "prediction": json.loads(driver.find_element(By.ID, "prediction").text),
            "error": driver.find_element(By.ID, "error").text,
        }
    finally:
        driver.quit()


@pytest.mark.parametrize("server", SERVERS)
async def test_the_playground_streams_the_reply_and_shows_the_typed_prediction(server: str) -> None:
    lm = DummyLM([{"drinks": ["latte"], "reply": REPLY}], stream_chunk=4, stream_delay=0.1)
    app = td.serving.app({"order": td.Predict(Order)})
    stop = trio.Event()
    with trio.fail_after(60), td.context(lm=lm):
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                functools.partial(serve, app, "127.0.0.1", 0, shutdown=stop.wait, server=server)
            )
            try:
                seen = await trio.to_thread.run_sync(drive_the_playground, binds[0] + "/", None)
            finally:
                stop.set()
    assert seen["programs"] == ["order"]
    assert seen["sizes"] == ["small", "large"]  # a list, made from the enum's schema
    assert seen["partial"] and len(seen["partial"]) < len(REPLY)  # grew while it streamed
    assert seen["streamed"] == REPLY
    assert seen["prediction"] == {"drinks": ["latte"], "reply": REPLY}
    assert seen["error"] == ""
    # The inputs reached the program typed.
    prompt = lm.requests[0].messages[-1].content
    assert "large" in prompt and "2" in prompt
