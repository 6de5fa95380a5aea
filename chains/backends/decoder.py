"""Continuous batching by hand: one KV cache for the running rows; rows join between decoding steps
(prefilled, then merged into the cache with left padding) and leave as soon as they finish.

transformers' own continuous-batching manager was measured here first: on CPU (paged attention) it
reached 39 tokens/s for 8 requests where one padded `generate()` reached 68 (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from chains.backends.pool import BlockPool
from chains.backends.sampling import pick


class Decoder:
    """The running batch: its cache, attention mask, next positions, and per-row sampling settings.

    With a KV pool, each row holds a lease (`row.lease`): a joining prompt whose start is cached prefills
    only the rest, and a row's blocks receive what it processed (its prompt at once, its reply as it leaves).
    """

    def __init__(self, model: Any, pad_token_id: int, pool: BlockPool | None = None) -> None:
        self.model, self.pad, self.pool = model, pad_token_id, pool
        self.device = model.device
        self.rows: list[Any] = []  # opaque per-row objects, in batch order
        self.fed: list[list[int]] = []  # per row: the tokens whose keys and values are in the cache
        self.cache: DynamicCache | None = None
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=self.device)
        self.positions = torch.zeros(0, dtype=torch.long, device=self.device)  # next position per row
        self.last = torch.zeros(0, dtype=torch.long, device=self.device)  # last token per row
        self._checked: list[list[int]] = []  # per row: its last token and drafts, between verify and settle

    def __len__(self) -> int:
        return len(self.rows)

    @torch.inference_mode()
    def join(self, rows: list[Any], prompts: list[list[int]], params: list[Any]) -> list[tuple[int, int]]:
        """Prefill new rows and merge them into the batch; each one's (first token, prompt tokens reused
        from the pool)."""
        hits = [_cached(row) for row in rows]
        if len(prompts) > 1:  # one padded prefill beats separate ones unless most of a prompt is cached
            hits = [h if 2 * h >= len(p) else 0 for h, p in zip(hits, prompts, strict=True)]
        cold = [i for i, hit in enumerate(hits) if not hit]
        firsts: dict[int, int] = {}
        if cold:
            tokens = self._prefill(
                [rows[i] for i in cold], [prompts[i] for i in cold], [params[i] for i in cold]
            )
            firsts.update(zip(cold, tokens, strict=True))
        for i, hit in enumerate(hits):
            if hit:
                firsts[i] = self._resume(rows[i], prompts[i], params[i], hit)
        return [(firsts[i], hit) for i, hit in enumerate(hits)]

    def _prefill(self, rows: list[Any], prompts: list[list[int]], params: list[Any]) -> list[int]:
        """The whole prompts, left-padded into one batch."""
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, prompt in enumerate(prompts):
            ids[i, width - len(prompt) :] = torch.tensor(prompt)
            mask[i, width - len(prompt) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True
        ).logits[:, -1, :]
        first = pick(logits, params)
        self._merge(rows, prompts, cache, mask, mask.sum(-1), first)
        return first.tolist()

    def _resume(self, row: Any, prompt: list[int], params: Any, hit: int) -> int:
        """One prompt from its first `hit` tokens cached in the pool: only the rest go through the model."""
        rest = torch.tensor([prompt[hit:]], dtype=torch.long, device=self.device)
        cache = DynamicCache(ddp_cache_data=self.pool.prefix(row.lease, hit))
        mask = torch.ones((1, len(prompt)), dtype=torch.long, device=self.device)
        positions = torch.arange(hit, len(prompt), device=self.device).unsqueeze(0)
        logits = self.model(
            input_ids=rest, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True
        ).logits[:, -1, :]
        first = pick(logits, [params])
        lengths = torch.tensor([len(prompt)], dtype=torch.long, device=self.device)
        self._merge([row], [prompt], cache, mask, lengths, first)
        return int(first[0])

    @torch.inference_mode()
    def step(self, params: list[Any]) -> list[int]:
        """One decoding step for every row; returns each row's next token."""
        for fed, token in zip(self.fed, self.last.tolist(), strict=True):
            fed.append(token)
        self.mask = torch.cat(
            [self.mask, torch.ones((len(self), 1), dtype=torch.long, device=self.device)], 1
        )
        logits = self.model(
            input_ids=self.last.unsqueeze(1),
            attention_mask=self.mask,
            position_ids=self.positions.unsqueeze(1),
            cache=self.cache,
            use_cache=True,
        ).logits[:, -1, :]
        self.last = pick(logits, params)
        self.positions = self.positions + 1
        return self.last.tolist()

    @torch.inference_mode()
    def verify(self, drafts: list[list[int]]) -> list[Any]:
        """One pass over each row's last token and its drafts (speculation.py); each row's logits
        (1 + its drafts, vocab). `settle` then says what each row keeps."""
        sizes = [1 + len(d) for d in drafts]
        width = max(sizes)
        ids = torch.full((len(self), width), self.pad, dtype=torch.long)
        chunk = torch.zeros((len(self), width), dtype=torch.long)
        for i, (last, draft) in enumerate(zip(self.last.tolist(), drafts, strict=True)):
            ids[i, width - sizes[i] :] = torch.tensor([last, *draft])  # right-aligned, as the whole batch is
            chunk[i, width - sizes[i] :] = 1
        ids, chunk = ids.to(self.device), chunk.to(self.device)
        starts = torch.tensor([width - s for s in sizes], device=self.device)
        positions = (
            self.positions[:, None] + torch.arange(width, device=self.device) - starts[:, None]
        ).clamp(min=0)
        self.mask = torch.cat([self.mask, chunk], 1)
        logits = self.model(
            input_ids=ids, attention_mask=self.mask, position_ids=positions, cache=self.cache, use_cache=True
        ).logits
        self._checked = [[last, *draft] for last, draft in zip(self.last.tolist(), drafts, strict=True)]
        return [logits[i, width - size :] for i, size in enumerate(sizes)]

    def settle(self, kept: list[list[int]]) -> None:
        """After `verify`: each row keeps the keys of its last token and accepted drafts (its kept tokens
        but the final one, which becomes its next input); rejected drafts' columns go."""
        fed_counts = [len(k) for k in kept]  # last token + accepted drafts are in the cache
        width, sizes = self.mask.shape[1], [len(c) for c in self._checked]
        chunk = max(sizes)
        keep_width = max(fed_counts)
        index = torch.zeros((len(self), keep_width), dtype=torch.long)
        mask = torch.zeros((len(self), keep_width), dtype=torch.long)
        for i, (count, size) in enumerate(zip(fed_counts, sizes, strict=True)):
            start = chunk - size  # the row's first column in the chunk
            index[i, keep_width - count :] = torch.arange(start, start + count)
            mask[i, keep_width - count :] = 1
            self.fed[i].extend(self._checked[i][:count])
        index, mask = index.to(self.device), mask.to(self.device)
        self.mask = torch.cat([self.mask[:, : width - chunk], mask], 1)
        for layer in self.cache.layers:
            layer.keys = _take_columns(layer.keys, index, chunk)
            layer.values = _take_columns(layer.values, index, chunk)
        self.positions = self.positions + torch.tensor(fed_counts, device=self.device)
        self.last = torch.tensor([k[-1] for k in kept], dtype=torch.long, device=self.device)
        self._checked = []

    def keep(self, keep: list[bool]) -> None:
        """Drop the rows marked False, then the leading columns no remaining row uses."""
        if all(keep):
            return
        if self.pool is not None:
            for i in (i for i, k in enumerate(keep) if not k):
                self._store(i)
        index = torch.tensor([i for i, k in enumerate(keep) if k], dtype=torch.long, device=self.device)
        self.rows = [row for row, k in zip(self.rows, keep, strict=True) if k]
        self.fed = [fed for fed, k in zip(self.fed, keep, strict=True) if k]
        if not self.rows:
            self.cache, self.mask = None, self.mask[:0, :0]
            self.positions, self.last = self.positions[:0], self.last[:0]
            return
        self.mask, self.positions, self.last = self.mask[index], self.positions[index], self.last[index]
        used = self.mask.any(0).nonzero()
        start = int(used[0]) if len(used) else 0
        self.mask = self.mask[:, start:]
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[index, :, start:], layer.values[index, :, start:]

    def _store(self, i: int) -> None:
        """Write row i's computed keys and values (its trailing unpadded columns) into its blocks."""
        tokens, layers = self.fed[i], self.cache.layers
        n = len(tokens)
        self.pool.commit(
            self.rows[i].lease, tokens, lambda j: (layers[j].keys[i, :, -n:], layers[j].values[i, :, -n:])
        )

    def _merge(
        self,
        rows: list[Any],
        prompts: list[list[int]],
        cache: DynamicCache,
        mask: Any,
        lengths: Any,
        first: Any,
    ) -> None:
        self.fed += [list(p) for p in prompts]
        if self.cache is None:
            self.rows, self.cache, self.mask = list(rows), cache, mask
            self.positions, self.last = lengths, first
            return
        width = max(self.mask.shape[1], mask.shape[1])
        self.mask = torch.cat([_left_pad(self.mask, width), _left_pad(mask, width)])
        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([_left_pad(mine.keys, width, -2), _left_pad(theirs.keys, width, -2)])
            mine.values = torch.cat([_left_pad(mine.values, width, -2), _left_pad(theirs.values, width, -2)])
        self.rows += rows
        self.positions = torch.cat([self.positions, lengths])
        self.last = torch.cat([self.last, first])

    def share(self, count: int) -> None:
        """The prompts of the last `count` rows (just joined) go into their blocks, so that requests
        arriving while these generate share them too; the engine calls it once their first tokens are out."""
        if self.pool is not None:
            for i in range(len(self.rows) - count, len(self.rows)):
                self._store(i)


def _cached(row: Any) -> int:
    """Prompt tokens of a row that its lease found in the pool (0 without a pool)."""
    lease = getattr(row, "lease", None)
    return lease.cached_tokens if lease is not None else 0


def _take_columns(tensor: Any, index: Any, chunk: int) -> Any:
    """Keys or values (B, H, T, D) with their last `chunk` columns replaced by the columns `index` (B, W)
    picks among them."""
    rows, heads, _, dim = tensor.shape
    picked = tensor[:, :, -chunk:].gather(2, index[:, None, :, None].expand(rows, heads, index.shape[1], dim))
    return torch.cat([tensor[:, :, :-chunk], picked], 2)


def _left_pad(tensor: Any, width: int, dim: int = -1) -> Any:
    """Zeros on the left of `dim` up to `width` (a mask, or cached keys/values of shape B,H,T,D)."""
    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    pad = [0, 0] * (-dim - 1) + [missing, 0]
    return F.pad(tensor, pad)
