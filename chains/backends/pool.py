"""The KV block pool: every cached key and value lives in one allocation made at start, in blocks of 16
tokens, so the memory the prefix cache takes is the budget it was given, whatever the traffic.

A row that joins the batch leases blocks for its prompt and all it may generate. Blocks that hold a full
16 tokens are registered under (their parent block, their tokens): a later prompt that starts the same way
references them instead of computing them again (vLLM's automatic prefix caching). A block nobody
references stays cached until the pool needs it, least recently used first. Blocks are written in place:
after start the pool never allocates, so the allocator cannot fragment.

The running batch computes on its own contiguous tensors (attention needs them); a row's blocks receive
its keys and values when they are complete (prompt at join, reply when the row leaves).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

BLOCK = 16
ROOT = 0  # the parent id of a first block


@dataclass
class Lease:
    """The blocks one row holds, by position (block j holds tokens 16j..16j+15): the first `shared` were
    found cached; `registered` leading ones hold computed tokens others may reuse."""

    blocks: list[int]
    shared: int
    registered: int = 0
    released: bool = False

    @property
    def cached_tokens(self) -> int:
        """Prompt tokens whose keys and values the pool already holds."""
        return self.shared * BLOCK


@dataclass
class PoolStats:
    """Counters read by /metrics."""

    evictions: int = 0
    hits: int = 0
    waits: int = 0


@dataclass
class BlockPool:
    """`total` blocks in `storage` (layers, 2, kv heads, blocks, 16, head dim), of `block_bytes` each.

    Used from the model thread only; /metrics reads its counts.
    """

    storage: Any
    total: int
    block_bytes: int
    refs: list[int] = field(init=False)
    free: list[int] = field(init=False)
    cached: OrderedDict[int, None] = field(init=False, default_factory=OrderedDict)  # unreferenced, LRU first
    index: dict[tuple, int] = field(init=False, default_factory=dict)  # (parent uid, 16 tokens) -> block
    keys: dict[int, tuple] = field(init=False, default_factory=dict)  # block -> its index key
    uids: list[int] = field(init=False)  # a registered block's identity as a parent (0: none)
    stats: PoolStats = field(init=False, default_factory=PoolStats)

    def __post_init__(self) -> None:
        self.refs = [0] * self.total
        self.free = list(range(self.total - 1, -1, -1))  # popped from the end: block 0 first
        self.uids = [0] * self.total
        self._uid = itertools.count(1)

    # --- counts -------------------------------------------------------------------------------------

    @property
    def bytes(self) -> int:
        """The pool's size in bytes."""
        return self.total * self.block_bytes

    @property
    def used(self) -> int:
        """Blocks held by running rows."""
        return self.total - len(self.free) - len(self.cached)

    @property
    def tokens(self) -> int:
        """Tokens the pool holds for reuse (registered blocks)."""
        return len(self.keys) * BLOCK

    def check(self) -> None:
        """Raise if the block accounting does not add up (for tests and debugging)."""
        free, cached = set(self.free), set(self.cached)
        held = {b for b in range(self.total) if self.refs[b] > 0}
        assert len(free) == len(self.free), "a block is free twice"
        assert not (free & cached) and not (free & held) and not (cached & held), "a block in two states"
        assert len(free) + len(cached) + len(held) == self.total, "a block is lost"
        assert cached <= set(self.keys), "a cached block is not registered"
        assert all(self.index[key] == b for b, key in self.keys.items()), "the index disagrees"

    # --- leases -------------------------------------------------------------------------------------

    @staticmethod
    def blocks_for(tokens: int) -> int:
        """Blocks that hold `tokens` tokens."""
        return -(-tokens // BLOCK)

    def lease(self, prompt: list[int], tokens: int, keep: int = 1) -> Lease | None:
        """Blocks for a row of `tokens` tokens (prompt and reply): its prompt's cached full blocks, leaving
        at least `keep` prompt tokens to compute, then fresh ones. None when the pool cannot give them
        now (running rows hold the rest)."""
        found = self._match(prompt[: max(0, len(prompt) - keep)])
        fresh = self.blocks_for(tokens) - len(found)
        unheld = sum(1 for b in found if self.refs[b] == 0)
        if fresh > len(self.free) + len(self.cached) - unheld:
            return None
        for block in reversed(found):  # the leaf is touched first: the root stays the most recent
            self._hold(block)
        lease = Lease([*found, *(self._take() for _ in range(fresh))], len(found), len(found))
        self.stats.hits += bool(found)
        return lease

    def reusable(self, prompt: list[int], keep: int = 1) -> int:
        """Prompt tokens a lease would find cached now (nothing is taken)."""
        return len(self._match(prompt[: max(0, len(prompt) - keep)])) * BLOCK

    def release(self, lease: Lease) -> None:
        """Give back a lease's blocks (once): registered ones stay cached, the others are free."""
        if lease.released:
            return
        lease.released = True
        for block in reversed(lease.blocks):  # parents released last: evicted after their children
            self.refs[block] -= 1
            if self.refs[block] == 0:
                if block in self.keys:
                    self.cached[block] = None
                else:
                    self.free.append(block)

    def _match(self, prompt: list[int]) -> list[int]:
        """The registered blocks holding the prompt's leading full blocks, in order."""
        found, parent = [], ROOT
        for start in range(0, len(prompt) - BLOCK + 1, BLOCK):
            block = self.index.get((parent, tuple(prompt[start : start + BLOCK])))
            if block is None:
                break
            found.append(block)
            parent = self.uids[block]
        return found

    def _hold(self, block: int) -> None:
        if self.refs[block] == 0:
            del self.cached[block]
        self.refs[block] += 1

    def _take(self) -> int:
        """A free block, else the least recently used cached one (forgotten first)."""
        if self.free:
            block = self.free.pop()
        else:
            block, _ = self.cached.popitem(last=False)
            self._forget(block)
            self.stats.evictions += 1
        self.refs[block] = 1
        return block

    def _forget(self, block: int) -> None:
        """Unregister a block: its children become unreachable (their parent uid is gone) and age out."""
        del self.index[self.keys.pop(block)]
        self.uids[block] = 0

    # --- keys and values ----------------------------------------------------------------------------

    def prefix(self, lease: Lease, length: int) -> list[tuple[Any, Any]]:
        """The first `length` cached tokens (a multiple of 16) as one (1, heads, length, dim) pair per
        layer: a copy the running batch takes in."""
        ids = lease.blocks[: length // BLOCK]
        layers = []
        for layer in self.storage:
            k, v = (part[:, ids] for part in layer)  # (heads, blocks, 16, dim)
            heads, _, _, dim = k.shape
            layers.append((k.reshape(1, heads, length, dim), v.reshape(1, heads, length, dim)))
        return layers

    def commit(self, lease: Lease, tokens: list[int], source: Any) -> None:
        """Register the lease's blocks that `tokens` (the row's computed tokens) fill, writing their keys
        and values from source(layer) -> (keys, values) of shape (heads, len(tokens), dim). A block
        another row registered first is shared instead of written twice."""
        full = min(len(tokens) // BLOCK, len(lease.blocks))
        writes = []
        parent = self.uids[lease.blocks[lease.registered - 1]] if lease.registered else ROOT
        for j in range(lease.registered, full):
            key = (parent, tuple(tokens[j * BLOCK : (j + 1) * BLOCK]))
            other = self.index.get(key)
            if other is not None:  # computed already: hold that one and give ours back
                self._hold(other)
                self.refs[lease.blocks[j]] -= 1
                self.free.append(lease.blocks[j])
                lease.blocks[j] = other
            else:
                block = lease.blocks[j]
                self.index[key], self.keys[block] = block, key
                self.uids[block] = next(self._uid)
                writes.append(j)
            parent = self.uids[lease.blocks[j]]
        lease.registered = max(lease.registered, full)
        if writes:
            self._write([lease.blocks[j] for j in writes], writes, source)

    def _write(self, ids: list[int], positions: list[int], source: Any) -> None:
        for layer, stored in enumerate(self.storage):
            for part, computed in zip(stored, source(layer), strict=True):
                heads, _, dim = computed.shape
                blocks = computed[:, : (positions[-1] + 1) * BLOCK].reshape(heads, -1, BLOCK, dim)
                part[:, ids] = blocks[:, positions[0] :] if _consecutive(positions) else blocks[:, positions]


def _consecutive(positions: list[int]) -> bool:
    return positions[-1] - positions[0] == len(positions) - 1


def bytes_per_token(model: Any) -> int:
    """Memory one cached token takes: keys and values of every layer."""
    heads, dim, layers = kv_shape(model)
    size = getattr(model, "kv_element_size", None) or next(model.parameters()).element_size()
    return 2 * layers * heads * dim * size


def kv_shape(model: Any) -> tuple[int, int, int]:
    """(kv heads, head dim, layers) of a causal LM."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return heads, dim, config.num_hidden_layers


def default_bytes(model: Any, share: float = 0.05, most: int = 2**30) -> int:
    """The pool's size when none is set: `share` of the device's memory (RAM on CPU), at most `most`."""
    if model.device.type == "cuda":
        import torch

        total = torch.cuda.get_device_properties(model.device).total_memory
    else:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return min(most, int(total * share))


def allocate(model: Any, budget: int) -> BlockPool:
    """A pool of `budget` bytes for `model` (numpy for an ONNX graph, else torch on the model's device).

    Reserved, not touched: pages become resident as blocks are first written, up to the budget.
    """
    heads, dim, layers = kv_shape(model)
    block_bytes = bytes_per_token(model) * BLOCK
    total = budget // block_bytes
    if total < 1:
        raise ValueError(
            f"HFCHAIN_KV_CACHE_BYTES={budget} holds no block of {BLOCK} tokens of this model "
            f"({block_bytes} bytes each): raise it, or set it to 0 to turn the prefix cache off"
        )
    shape = (layers, 2, heads, total, BLOCK, dim)
    if hasattr(model, "kv_dtype"):  # an ONNX graph: numpy caches
        import numpy as np

        storage = np.empty(shape, model.kv_dtype)
    else:
        import torch

        dtype = next(model.parameters()).dtype
        storage = torch.empty(shape, dtype=dtype, device=model.device)
    return BlockPool(storage, total, block_bytes)
