"""Stop sequences of any length, for whole texts and for streams split at any point."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence


def first_stop(text: str, stops: Sequence[str] | None) -> str | None:
    """The stop sequence that occurs earliest in `text` (the longest of those starting there), or None."""
    found = [(i, -len(s), s) for s in stops or () if s and (i := text.find(s)) >= 0]
    return min(found)[2] if found else None


def truncate_at_stop(text: str, stops: Sequence[str] | None) -> tuple[str, bool]:
    """Cut `text` before the earliest stop sequence; say whether one was found."""
    cut = min((i for s in stops or () if s and (i := text.find(s)) >= 0), default=-1)
    return (text, False) if cut < 0 else (text[:cut], True)


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of `text` that could still grow into a stop sequence."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if stop.startswith(text[-size:]):
                longest = size
                break
    return longest


class StopFilter:
    """Feed stream chunks in, get safe text out; stops at the first stop sequence."""

    def __init__(self, stops: Sequence[str] | None) -> None:
        self.stops = [s for s in stops or () if s]
        self.pending = ""
        self.stopped = False
        self.matched: str | None = None  # the stop sequence that ended the stream

    def feed(self, chunk: str) -> str:
        """Text that can be emitted now; holds back a tail that may begin a stop sequence."""
        if self.stopped:
            return ""
        if not self.stops:
            return chunk
        self.pending += chunk
        text, found = truncate_at_stop(self.pending, self.stops)
        if found:
            self.matched = first_stop(self.pending, self.stops)
            self.stopped, self.pending = True, ""
            return text
        keep = _held_back(self.pending, self.stops)
        out, self.pending = self.pending[: len(self.pending) - keep], self.pending[len(self.pending) - keep :]
        return out

    def flush(self) -> str:
        """Whatever was held back, once the stream has ended without a stop."""
        out, self.pending = ("" if self.stopped else self.pending), ""
        return out


def filter_stream(chunks: Iterable[str], stops: Sequence[str] | StopFilter | None) -> Iterator[str]:
    """Yield the stream's text up to (not including) the first stop sequence."""
    stop_filter = stops if isinstance(stops, StopFilter) else StopFilter(stops)
    for chunk in chunks:
        out = stop_filter.feed(chunk)
        if out:
            yield out
        if stop_filter.stopped:
            return
    if tail := stop_filter.flush():
        yield tail
