"""How the ONNX encoder groups texts: sorted by length, each call within its padded-token budget, every
text exactly once."""

import random

from chains.backends.onnx.encoder import _batches


def test_batches_cover_every_text_once_within_the_budget():
    rng = random.Random(0)
    ids = [[0] * rng.randint(1, 300) for _ in range(200)]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    for budget in (1, 64, 512, 2048, 10**6):
        batches = _batches(order, ids, budget)
        assert sorted(i for b in batches for i in b) == list(range(len(ids)))
        for batch in batches:
            padded = len(batch) * max(len(ids[i]) for i in batch)
            assert len(batch) == 1 or padded <= budget
    assert len(_batches(order, ids, 10**6)) == 1
    assert len(_batches(order, ids, 1)) == len(ids)
