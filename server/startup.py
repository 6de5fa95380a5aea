"""The cyclic garbage collector is paused while the server starts, and resumed once the model is loaded.

Start-up builds millions of long-lived objects (the web stack's and torch's modules, the model) and
almost no garbage; the collector would traverse them again and again: about 1.3 s of a 7.5 s start
here (benchmarks/startup.py). Once loaded, all of it is frozen out of every later collection (gc.freeze),
which also keeps the collections of a serving process short. Start-up's little garbage (about 14,000 small
objects, ~10 MB, no tensors) is frozen with it: collecting it first would hold every thread for 0.6 s.
"""

from __future__ import annotations

import gc
import importlib
import logging
import threading
from concurrent.futures import Future

log = logging.getLogger("hfchain.server")
_paused = False
DEFERRED = ("langchain.agents", "chains.agent.middleware")  # imported at first use; warmed after the load


def pause_gc() -> None:
    """Stop automatic collections until resume_gc (a no-op if they are already off)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume_gc(*_: object, freeze: bool = True) -> None:
    """Freeze what start-up built, then collect as usual again (only if pause_gc paused it).

    freeze=False: just turn the collector back on (a start that failed before loading anything).
    """
    global _paused
    if _paused:
        _paused = False
        if freeze:
            gc.freeze()
        gc.enable()
        log.debug("garbage collection resumed; %d start-up objects frozen", gc.get_freeze_count())


def warm_deferred_imports(*_: object) -> None:
    """Import, in the background, what the first request would otherwise import on the event loop."""

    def load() -> None:
        for name in DEFERRED:
            importlib.import_module(name)

    threading.Thread(target=load, name="hfchain-imports", daemon=True).start()


def after_load(loading: object) -> None:
    """When a background load (a Future) ends, however it ends: resume the collector and warm the
    deferred imports; at once for anything else (e.g. the endpoint backend)."""
    if isinstance(loading, Future):
        loading.add_done_callback(resume_gc)
        loading.add_done_callback(warm_deferred_imports)
    else:
        resume_gc()
        warm_deferred_imports()
