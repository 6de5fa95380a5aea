"""Continuous batching over an ONNX decoder graph: the same interface as the torch Decoder (join, step,
keep), with the cache kept as numpy arrays (rows, kv heads, tokens, head dim) per layer.

Rows are right-padded: row i's tokens fill its first lens[i] columns, and the graph's attention writes
each new token at the row's own length, so rows of any length share one step and a finished row's
columns are simply cut. Each joining prompt is prefilled alone (the pruned graph returns the last
position's logits only), from its cached prefix when the KV pool holds one.

The pool gets prompts only, not prompt plus reply as with torch: keys and values computed one
token at a time (another attention kernel) differ in their last bits from a prefill's, and int8
activations turn that into different replies; a follow-up turn recomputes the previous reply.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from chains.backends.pool import BlockPool
from chains.backends.sampling import pick

SLACK = 32  # unused cache columns a row may carry after rejected drafts before they are cut


class OnnxDecoder:
    """The running batch: per-layer caches, each row's length and last token, and its sampling rows.

    When the model must never compute a single row (batch-invariant int4), a lone row decodes next to a
    phantom row (one cached token, never read back) that is dropped as soon as another row joins.
    """

    def __init__(self, model: Any, pad_token_id: int, pool: BlockPool | None = None) -> None:
        self.model, self.pad, self.pool = model, pad_token_id, pool
        # the graph's attention takes several new tokens for one row at a time; int4's quantized
        # activations give a pass over several tokens other numbers than one token at a time: no drafts
        self.verify_rows = 0 if model.precision == "int4" else 1
        self.drafting = {"min_ngram": 1, "pause_after": 10**9}  # drafts cost little here (speculation.py)
        self.rows: list[Any] = []
        self.fed: list[list[int]] = []  # per row: the tokens whose keys and values are in the cache
        self.lens = np.zeros(0, np.int64)
        self.last = np.zeros(0, np.int64)
        self.past: list[np.ndarray] | None = None  # (rows [+ phantom], heads, width, dim) per name
        self.phantom = False
        self._checked: list[list[int]] = []  # the row's last token and drafts, between verify and settle

    def __len__(self) -> int:
        return len(self.rows)

    def join(self, rows: list[Any], prompts: list[list[int]], params: list[Any]) -> list[tuple[int, int]]:
        """Prefill new rows one by one and merge them into the batch; each one's (first token, prompt
        tokens reused from the pool; its lease left at least model.min_rows to compute)."""
        logits, presents, reused = [], [], []
        for row, prompt in zip(rows, prompts, strict=True):
            hit = row.lease.cached_tokens if getattr(row, "lease", None) is not None else 0
            past = [a for pair in self.pool.prefix(row.lease, hit) for a in pair] if hit else None
            last, present = self.model.prefill(prompt, past, hit)
            logits.append(last[0])
            presents.append(present)
            reused.append(hit)
        first = pick(torch.from_numpy(np.stack(logits)), params).numpy().astype(np.int64)
        self._merge(rows, prompts, presents, first)
        return list(zip(first.tolist(), reused, strict=True))

    def step(self, params: list[Any]) -> list[int]:
        """One decoding step for every row; returns each row's next token."""
        for fed, token in zip(self.fed, self.last.tolist(), strict=True):
            fed.append(token)
        lens, ids = self.lens + 1, self.last
        if self.phantom:  # the phantom keeps one token: it writes and reads column 0 only
            lens, ids = np.append(lens, 1), np.append(ids, self.pad)
        width = self.past[0].shape[2] + 1
        mask = np.arange(width)[None, :] < lens[:, None]
        logits, self.past = self.model.forward(ids[:, None], mask, self.past)
        self.lens = self.lens + 1
        tokens = pick(torch.from_numpy(logits[: len(self.rows)]), params)
        self.last = tokens.numpy().astype(np.int64)
        return tokens.tolist()

    def verify(self, drafts: list[list[int]]) -> list[Any]:
        """One pass over the row's last token and its drafts (speculation.py): its logits (1 + drafts,
        vocab). The graph's attention takes several new tokens for one row only (see verify_rows)."""
        (draft,) = drafts
        ids = np.asarray([[int(self.last[0]), *draft]], np.int64)
        count = ids.shape[1]
        past = [p[:1] for p in self.past]  # without the phantom: count >= 2 rows of tokens are computed
        width = past[0].shape[2] + count
        mask = np.arange(width)[None, :] < self.lens[:, None] + count
        logits, self.past = self.model.forward_positions(ids, mask, past, count)
        self.phantom = False
        self._checked = [ids[0].tolist()]
        return [torch.from_numpy(logits[0])]

    def settle(self, kept: list[list[int]]) -> None:
        """After `verify`: the row's cache holds its last token and accepted drafts; columns after them
        are overwritten by later steps, and cut once they pile up."""
        (tokens,) = kept
        self.fed[0].extend(self._checked[0][: len(tokens)])
        self.lens = self.lens + len(tokens)
        self.last = np.asarray([tokens[-1]], np.int64)
        if self.past[0].shape[2] - int(self.lens.max()) > SLACK:
            self.past = [p[:, :, : int(self.lens.max())] for p in self.past]
        self._checked = []
        self._set_phantom()

    def keep(self, keep: list[bool]) -> None:
        """Drop the rows marked False, then the columns no remaining row uses."""
        if all(keep):
            return
        index = [i for i, k in enumerate(keep) if k]
        self.rows = [self.rows[i] for i in index]
        self.fed = [self.fed[i] for i in index]
        self.lens, self.last = self.lens[index], self.last[index]
        if not self.rows:
            self.past, self.phantom = None, False
            return
        width = int(self.lens.max())
        self.past, self.phantom = [p[index, :, :width] for p in self.past], False  # index: real rows only
        self._set_phantom()

    def _merge(self, rows: list[Any], prompts: list[list[int]], presents: list[list], first: Any) -> None:
        """Append the prefilled rows (their presents) to the batch, right-padded to a common width."""
        mine = [] if self.past is None else [p[: len(self.rows)] for p in self.past]
        width = max([len(p) for p in prompts] + ([mine[0].shape[2]] if mine else []))
        merged = []
        for j in range(len(self.model.past_names)):
            parts = ([mine[j]] if mine else []) + [present[j] for present in presents]
            merged.append(np.concatenate([_right_pad(part, width) for part in parts]))
        self.past, self.phantom = merged, False
        self.rows += rows
        self.fed += [list(p) for p in prompts]
        self.lens = np.concatenate([self.lens, [len(p) for p in prompts]]).astype(np.int64)
        self.last = np.concatenate([self.last, first]).astype(np.int64)
        self._set_phantom()

    def share(self, count: int) -> None:
        """The prompts of the last `count` rows (just joined) go into their blocks (see Decoder.share)."""
        if self.pool is not None:
            for i in range(len(self.rows) - count, len(self.rows)):
                self._store(i)

    def _set_phantom(self) -> None:
        """Add or drop the phantom row so that every step computes at least model.min_rows rows."""
        needed = len(self.rows) < self.model.min_rows
        if needed and not self.phantom:
            shape = (1, *self.past[0].shape[1:])
            self.past = [np.concatenate([p[: len(self.rows)], np.zeros(shape, p.dtype)]) for p in self.past]
        elif self.phantom and not needed:
            self.past = [p[: len(self.rows)] for p in self.past]
        self.phantom = needed

    def _store(self, i: int) -> None:
        """Write row i's keys and values (its first lens[i] columns) into its blocks."""
        tokens, past = self.fed[i], self.past
        n = len(tokens)
        self.pool.commit(
            self.rows[i].lease, tokens, lambda j: (past[2 * j][i, :, :n], past[2 * j + 1][i, :, :n])
        )


def _right_pad(array: np.ndarray, width: int) -> np.ndarray:
    """Zeros after the tokens axis (axis 2) up to `width`."""
    missing = width - array.shape[2]
    if missing <= 0:
        return array
    return np.pad(array, ((0, 0), (0, 0), (0, missing), (0, 0)))
