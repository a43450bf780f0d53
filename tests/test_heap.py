"""Servers settle their heap once they listen: start-up frozen, young collections rarer."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

from trio_dspy import heap


@pytest.fixture
def gc_state() -> Iterator[None]:
    """Give the collector back as it was: the test process goes on after."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_settling_freezes_what_start_up_made_and_makes_young_collections_rarer(
    gc_state: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(heap, "_DEFAULT_THRESHOLDS", gc.get_threshold())
    heap.settle_heap()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == heap.SERVING_GC_THRESHOLDS


def test_thresholds_the_application_set_itself_are_kept(
    gc_state: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(heap, "_DEFAULT_THRESHOLDS", (700, 10, 10))
    gc.set_threshold(1234, 5, 6)  # the application's own choice
    heap.settle_heap()
    assert gc.get_threshold() == (1234, 5, 6)
    assert gc.get_freeze_count() > 0


def _thresholds_once_listening(module: str, argv: list[str]) -> str:
    """Run ``trio-dspy ARGV`` in a child process whose ``MODULE.settle_heap`` prints
    the collector's thresholds after settling, then ends the process."""
    code = (
        "import gc, os, sys, importlib, trio_dspy.cli as cli\n"
        f"where = importlib.import_module({module!r})\n"
        "real = where.settle_heap\n"
        "def spy():\n"
        "    real()\n"
        "    print('thresholds', gc.get_threshold(), gc.get_freeze_count() > 0, flush=True)\n"
        "    os._exit(0)\n"
        "where.settle_heap = spy\n"
        f"sys.exit(cli.main({argv!r}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    return out.stdout + out.stderr


def test_serve_sim_settles_its_heap_once_it_listens() -> None:
    out = _thresholds_once_listening("trio_dspy.cli", ["serve-sim", "--port", "0"])
    assert f"thresholds {heap.SERVING_GC_THRESHOLDS} True" in out, out


@pytest.mark.parametrize("server", ["hypercorn", "h11"])
def test_serve_settles_its_heap_once_it_listens(server: str) -> None:
    if server == "hypercorn":
        pytest.importorskip("hypercorn")
    argv = ["serve", "tests.serve_workers_target:programs", "--port", "0", "--server", server]
    out = _thresholds_once_listening("trio_dspy.serving.run", argv)
    assert f"thresholds {heap.SERVING_GC_THRESHOLDS} True" in out, out
