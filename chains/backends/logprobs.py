"""Log probabilities of generated tokens: read from the distribution each token was drawn from (after a
grammar's mask, the temperature and top_p), carried to the consumer on the text pieces they produced.

Entries have OpenAI's shape: {"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import numpy as np

MAX_TOP = 20  # alternatives per token, as OpenAI allows
FLOOR = -9999.0  # what OpenAI reports for a token of zero probability (a guard's forced token, ...)
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # sentencepiece's byte fallback


class Piece(str):
    """A piece of reply text with the log-probability entries of the tokens that produced it."""

    logprobs: list[dict]

    def __new__(cls, text: str, logprobs: list[dict]) -> Piece:
        piece = super().__new__(cls, text)
        piece.logprobs = logprobs
        return piece


def joined(pieces: list[str]) -> str:
    """Several pieces as one (their entries concatenated when they carry any)."""
    text = "".join(pieces)
    entries = [entry for piece in pieces for entry in getattr(piece, "logprobs", [])]
    return Piece(text, entries) if any(isinstance(p, Piece) for p in pieces) else text


def scored(logits: Any, row: Any, token: int, top: int) -> tuple[int, float, list[tuple[int, float]]]:
    """(token, its log-probability, the `top` most likely tokens with theirs) from the row's distribution."""
    from chains.backends.sampling import MIN_TEMPERATURE, distribution

    logp = None
    if row.temperature >= MIN_TEMPERATURE:  # sampled: the tempered, nucleus-cut distribution it drew from
        probs = distribution(logits, row.temperature, row.top_p)
        logp = probs.log().cpu().numpy() if probs is not None else None
    if logp is None:  # greedy (or degenerate): the model's own distribution over what the grammar allows
        logp = _log_softmax(logits.detach().cpu().numpy() if hasattr(logits, "detach") else logits)
    alternatives: list[tuple[int, float]] = []
    if top:
        ids = np.argpartition(-logp, top - 1)[:top] if top < len(logp) else np.arange(len(logp))
        ids = ids[np.argsort(-logp[ids], kind="stable")]
        alternatives = [(int(i), float(logp[i])) for i in ids if logp[i] > -math.inf]
    return token, float(logp[token]), alternatives


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """In numpy, on one thread: torch's pool would wait on ONNX Runtime's spinning threads between steps."""
    values = logits.astype(np.float64)
    shifted = values - values.max()
    with np.errstate(divide="ignore"):
        return shifted - np.log(np.exp(shifted).sum())


def entry(tokenizer: Any, raw: tuple[int, float, list[tuple[int, float]]]) -> dict:
    """One token's entry in OpenAI's shape, from scored()'s tuple."""
    token, logprob, top = raw
    return {
        **_token(tokenizer, token, logprob),
        "top_logprobs": [_token(tokenizer, i, value) for i, value in top],
    }


def _token(tokenizer: Any, token: int, logprob: float) -> dict:
    text, data = token_bytes(tokenizer, token)
    return {"token": text, "logprob": max(logprob, FLOOR) if math.isfinite(logprob) else FLOOR, "bytes": data}


def token_bytes(tokenizer: Any, token: int) -> tuple[str, list[int]]:
    """A token's text and its UTF-8 bytes; a token holding part of a character gives its own bytes."""
    text = tokenizer.decode([token])
    if "\ufffd" not in text:
        return text, list(text.encode("utf-8"))
    piece = tokenizer.convert_ids_to_tokens(token) or ""
    if match := _BYTE_TOKEN.fullmatch(piece):
        return text, [int(match.group(1), 16)]
    table = _byte_decoder()
    if piece and all(c in table for c in piece):  # byte-level BPE (GPT-2's alphabet)
        return text, [table[c] for c in piece]
    return text, list(text.encode("utf-8"))


@functools.cache
def _byte_decoder() -> dict[str, int]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


PROMPT_CHUNK = 512  # prompt tokens per forward pass when scoring a prompt (bounds the logits' memory)


def prompt_scored(model: Any, ids: list[int], top: int) -> list[tuple[int, float, list[tuple[int, float]]]]:
    """scored()'s tuples for prompt tokens 1.. (the model's distribution before each; token 0 has none),
    computed in chunks on the model thread (work for LocalModel.run)."""
    greedy = _Greedy()
    rows: list[tuple[int, float, list[tuple[int, float]]]] = []
    for start, logits in _prompt_logits(model, ids):
        for offset, row_logits in enumerate(logits):
            position = start + offset + 1  # the token these logits predict
            if position < len(ids):
                rows.append(scored(row_logits, greedy, ids[position], top))
    return rows


class _Greedy:
    """A row with no sampling: scored() then reads the model's own distribution."""

    temperature, top_p = 0.0, 1.0


def _prompt_logits(model: Any, ids: list[int]) -> Any:
    """(first position, logits of each position of a chunk) over the prompt, one chunk at a time."""
    if hasattr(model, "forward_positions"):  # the ONNX runtime
        import numpy as np

        past = model.empty(1)
        for start in range(0, len(ids), PROMPT_CHUNK):
            chunk = np.asarray([ids[start : start + PROMPT_CHUNK]], np.int64)
            mask = np.ones((1, start + chunk.shape[1]), np.int64)
            logits, past = model.forward_positions(chunk, mask, past, chunk.shape[1])
            yield start, logits[0]
        return
    import torch
    from transformers import DynamicCache

    cache = DynamicCache()
    with torch.inference_mode():
        for start in range(0, len(ids), PROMPT_CHUNK):
            chunk = torch.tensor([ids[start : start + PROMPT_CHUNK]], device=model.device)
            logits = model(input_ids=chunk, cache=cache, use_cache=True).logits[0]
            yield start, logits.float().cpu().numpy()
