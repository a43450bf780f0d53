"""The heap of a long-running server: what the cyclic garbage collector may skip.

:func:`settle_heap` is called by ``trio-dspy serve`` (each worker too) and
``trio-dspy serve-sim`` once they listen. It changes process-wide state, so
the library never calls it on import or from code a user runs in their own
process; a server of your own may call it once it has started.
"""

from __future__ import annotations

import gc

__all__ = ["SERVING_GC_THRESHOLDS", "settle_heap"]

#: The collector's thresholds when this module is imported (the
#: interpreter's, unless something set them first): only those are replaced.
_DEFAULT_THRESHOLDS = gc.get_threshold()
#: The thresholds a server runs with (see :func:`settle_heap`).
SERVING_GC_THRESHOLDS = (20_000, 20, 20)


def settle_heap() -> None:
    """Tune the cyclic garbage collector for serving, once the server listens.
    Raises nothing.

    Under load the collector's passes took a quarter of the server's CPU
    (``benchmarks/serving.py``, 1,000 clients): every request's objects live
    through several young collections while the model answers, so each pass
    walked the requests in flight, and they were promoted into the old
    generation, whose full passes also walked everything start-up made. So:
    what start-up made (modules, the app, its programs, the lifespan's state)
    is frozen (:func:`gc.freeze`) out of the collector's reach, and a young
    collection waits for 20,000 allocations instead of 700, so that most of a
    request's objects are freed by reference counting before any pass sees
    them. Thresholds the application set itself are kept.
    """
    gc.collect()
    gc.freeze()
    if gc.get_threshold() == _DEFAULT_THRESHOLDS:
        gc.set_threshold(*SERVING_GC_THRESHOLDS)
