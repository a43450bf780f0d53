"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) for the playground's test.

``.ci/run`` installs them when they are missing and sets
``TRIO_DSPY_REQUIRE_BROWSER=1``, so there a missing browser fails the test;
a developer's machine without one skips it (and says why). Nothing is ever
downloaded: selenium is pointed at the installed driver and told to stay
offline.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, NoReturn

import pytest


def _missing(why: str) -> NoReturn:
    if os.environ.get("TRIO_DSPY_REQUIRE_BROWSER") == "1":
        pytest.fail(why)
    pytest.skip(why)


def headless_chromium() -> Any:
    """A selenium driver of headless Chromium; the caller quits it."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if browser is None or driver_path is None:
        _missing("chromium is not installed (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (pip install -e '.[dev]')")
    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager fetch a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1000,1400")
    return webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
