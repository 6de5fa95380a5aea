"""A bounded store of computed KV caches keyed by their token ids, so a prompt that starts with tokens the
model has already processed (a session's history, an agent's previous steps, a shared system prompt) only
prefills what follows them. The idea of vLLM's automatic prefix caching, for one process.

Index: every entry is registered under a hash of each 16-token block boundary of its tokens (a chain of
block hashes, like vLLM's); a lookup walks the prompt's blocks to the deepest registered one, then checks
the tokens themselves and extends the match token by token. Least recently used entries go first.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

BLOCK = 16
MIN_REUSE = BLOCK  # shorter matches are not worth a separate prefill


@dataclass
class Entry:
    """The tokens one row processed and their keys and values, one (1, heads, tokens, dim) pair per layer."""

    tokens: list[int]
    layers: list[tuple[Any, Any]]
    hashes: list[int] = field(default_factory=list)


@dataclass
class Hit:
    """The longest cached prefix of a prompt: its length and its layers, cut to that length."""

    length: int
    layers: list[tuple[Any, Any]]


def block_hashes(tokens: list[int]) -> list[int]:
    """hash of tokens[:16], of tokens[:32], ...: each chained on the one before."""
    hashes, previous = [], 0
    for start in range(0, len(tokens) - BLOCK + 1, BLOCK):
        previous = hash((previous, *tokens[start : start + BLOCK]))
        hashes.append(previous)
    return hashes


class PrefixStore:
    """At most `max_tokens` cached tokens; `lookup` a prompt's longest cached prefix, `add` what a row
    processed. Used from the model thread; the lock only guards the counters read by /metrics."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self.entries: OrderedDict[int, Entry] = OrderedDict()
        self.index: dict[int, set[int]] = {}
        self.tokens = 0
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, prompt: list[int]) -> Hit | None:
        """The longest cached prefix of `prompt` that leaves at least its last token to compute."""
        best_id = None
        for digest in block_hashes(prompt[:-1]):
            found = self.index.get(digest)
            if not found:
                break
            best_id = next(iter(found))  # an entry sharing this block and every one before it
        if best_id is None:
            return None
        entry = self.entries[best_id]
        length = _common(entry.tokens, prompt, len(prompt) - 1)
        if length < MIN_REUSE:  # a hash collision, or a match too short to pay for itself
            return None
        self.entries.move_to_end(best_id)
        return Hit(length, [(k[:, :, :length], v[:, :, :length]) for k, v in entry.layers])

    def add(self, tokens: list[int], layers: list[tuple[Any, Any]]) -> None:
        """Keep what a row processed (its tokens and their layers); drop entries it extends, then the
        least recently used while over the bound."""
        if len(tokens) < MIN_REUSE or len(tokens) > self.max_tokens:
            return
        hashes = block_hashes(tokens)
        for old in list(self.index.get(hashes[0], ())):  # entries starting as this one does
            held = self.entries[old].tokens
            if len(held) <= len(tokens) and _common(held, tokens, len(held)) == len(held):
                self._drop(old)  # the new entry holds all of it
        key = next(self._ids)
        self.entries[key] = Entry(tokens, layers, hashes)
        for digest in hashes:
            self.index.setdefault(digest, set()).add(key)
        with self._lock:
            self.tokens += len(tokens)
        while self.tokens > self.max_tokens:
            self._drop(next(iter(self.entries)))

    def covers(self, tokens: list[int]) -> bool:
        """Whether an entry already holds all of `tokens`."""
        hit = self.lookup([*tokens, -1])
        return hit is not None and hit.length == len(tokens)

    def _drop(self, key: int) -> None:
        entry = self.entries.pop(key)
        for digest in entry.hashes:
            owners = self.index.get(digest)
            if owners is not None:
                owners.discard(key)
                if not owners:
                    del self.index[digest]
        with self._lock:
            self.tokens -= len(entry.tokens)


def _common(a: list[int], b: list[int], limit: int) -> int:
    """Length of the common prefix of a and b, at most `limit`."""
    n = min(len(a), len(b), limit)
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def bytes_per_token(model: Any) -> int:
    """Memory one cached token takes: keys and values of every layer."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    size = getattr(model, "kv_element_size", None) or next(model.parameters()).element_size()
    return 2 * config.num_hidden_layers * heads * dim * size


def default_tokens(model: Any, share: float = 0.05, most: int = 32768) -> int:
    """A bound for the store: `share` of the device's memory (RAM on CPU), at most `most` tokens."""
    import os

    import torch

    if model.device.type == "cuda":
        total = torch.cuda.get_device_properties(model.device).total_memory
    else:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(MIN_REUSE, min(most, int(total * share) // bytes_per_token(model)))
