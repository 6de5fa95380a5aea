"""The embedding service over a fake encoder: requests waiting together share one batch, each gets its
own vectors in order, a failure reaches every waiting request and the worker goes on; inputs are checked."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from chains.errors import InputTooLong, InvalidInput
from chains.knowledge.embeddings import EmbeddingService
from chains.tokens import EstimatedTokens


class FakeEncoder:
    """Vectors [len(text), 0, ...]; the first call waits until `release` is set (so others queue)."""

    name, max_tokens = "fake", 8

    def __init__(self) -> None:
        self.tokens, self.calls, self.release = EstimatedTokens(), [], threading.Event()
        self.entered = threading.Event()
        self.fail_next = False

    def embed(self, texts):
        self.entered.set()
        self.release.wait(5)
        self.calls.append(list(texts))
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("encoder broke")
        return np.array([[len(t), 0.0] for t in texts], dtype=np.float32)


def test_waiting_requests_share_one_batch_and_keep_their_own_vectors():
    encoder = FakeEncoder()
    service = EmbeddingService(encoder, max_batch=64)
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(service.embed, ["a"])
        assert encoder.entered.wait(5)  # the worker encodes the first request and holds there
        rest = [pool.submit(service.embed, ["b" * i, "c" * (i + 1)]) for i in range(1, 6)]
        threading.Timer(0.3, encoder.release.set).start()
        assert first.result().vectors == [[1.0, 0.0]]
        for i, future in enumerate(rest, start=1):
            assert [v[0] for v in future.result().vectors] == [i, i + 1]
    assert len(encoder.calls) == 2 and len(encoder.calls[1]) == 10  # five requests, one batch
    assert service.requests == 6 and service.batches == 2


def test_a_failed_batch_fails_its_requests_and_the_next_one_works():
    encoder = FakeEncoder()
    encoder.release.set()
    encoder.fail_next = True
    service = EmbeddingService(encoder)
    with pytest.raises(RuntimeError, match="encoder broke"):
        service.embed(["x"])
    assert service.embed(["yy"]).vectors == [[2.0, 0.0]]


def test_inputs_are_checked_before_any_work():
    service = EmbeddingService(FakeEncoder())
    with pytest.raises(InvalidInput, match="input is empty"):
        service.embed([])
    with pytest.raises(InvalidInput, match=r"input\[1\] is empty"):
        service.embed(["ok", " "])
    with pytest.raises(InputTooLong, match="reads at most 8"):
        service.embed(["word " * 40])
    kept, tokens = service.check(["word " * 40], truncate=True)
    assert tokens == 8 and len(kept[0]) < len("word " * 40)


def test_the_embed_chain_answers_invoke_and_ainvoke():
    import asyncio

    from chains.knowledge.embeddings import build_embed_chain

    encoder = FakeEncoder()
    encoder.release.set()
    chain = build_embed_chain(EmbeddingService(encoder))
    out = chain.invoke({"texts": ["ab", "abc"]})
    assert out["embeddings"] == [[2.0, 0.0], [3.0, 0.0]] and out["dimensions"] == 2
    assert asyncio.run(chain.ainvoke("abcd"))["embeddings"] == [[4.0, 0.0]]


def test_a_batched_encoder_encodes_concurrent_callers_together_each_getting_its_rows():
    from chains.backends.batching import BatchedEncoder

    encoder = FakeEncoder()
    batched = BatchedEncoder(encoder)
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(batched.embed, ["a"])
        assert encoder.entered.wait(5)
        rest = [pool.submit(batched.embed, ["b" * i]) for i in range(1, 6)]
        threading.Timer(0.3, encoder.release.set).start()
        assert first.result().tolist() == [[1.0, 0.0]]
        assert [future.result().tolist() for future in rest] == [[[i, 0.0]] for i in range(1, 6)]
    assert len(encoder.calls) == 2 and len(encoder.calls[1]) == 5  # five callers, one batch
    assert batched.batcher.requests == 6 and batched.max_tokens == 8  # the rest is the encoder's
