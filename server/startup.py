"""The cyclic garbage collector is paused while the server starts, and resumed once the model is loaded.

Start-up builds millions of long-lived objects (the web stack's and torch's modules, the model) and
almost no garbage; the collector would traverse them again and again: about 1.3 s of a 7.5 s start
here (benchmarks/startup.py). Once loaded they are frozen out of every later collection (gc.freeze),
which also keeps the collections of a serving process short.
"""

from __future__ import annotations

import gc
import logging
from concurrent.futures import Future

log = logging.getLogger("hfchain.server")
_paused = False


def pause_gc() -> None:
    """Stop automatic collections until resume_gc (a no-op if they are already off)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume_gc(*_: object) -> None:
    """Freeze what start-up built, then collect as usual again (only if pause_gc paused it)."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
        log.debug("garbage collection resumed; %d start-up objects frozen", gc.get_freeze_count())


def resume_gc_after(loading: object) -> None:
    """Resume when a background load (a Future) ends, however it ends; at once for anything else."""
    if isinstance(loading, Future):
        loading.add_done_callback(resume_gc)
    else:
        resume_gc()
