"""The KV block pool's accounting on small numpy pools: leases, shared prefixes, eviction, waiting."""

import random

import numpy as np

from chains.backends.pool import BLOCK, BlockPool

HEADS, DIM, LAYERS = 2, 4, 3


def pool(blocks: int) -> BlockPool:
    storage = np.full((LAYERS, 2, HEADS, blocks, BLOCK, DIM), np.nan, np.float32)
    return BlockPool(storage, blocks, block_bytes=2 * LAYERS * HEADS * DIM * 4 * BLOCK)


def kv(tokens: list[int]):
    """Keys and values that encode each token (and layer) in every element, as a row would compute."""
    base = np.asarray(tokens, np.float32)[None, :, None]
    return lambda layer: (np.broadcast_to(base + 1000 * layer, (HEADS, len(tokens), DIM)),
                          np.broadcast_to(-base - 1000 * layer, (HEADS, len(tokens), DIM)))  # fmt: skip


def run(p: BlockPool, tokens: list[int], reply: int = 0):
    """Lease as the engine does, commit the prompt (and a reply), release; the lease."""
    lease = p.lease(tokens, len(tokens) + reply)
    assert lease is not None
    p.commit(lease, tokens, kv(tokens))
    p.release(lease)
    p.check()
    return lease


def test_a_lease_holds_prompt_and_reply_and_gives_every_block_back():
    p = pool(10)
    lease = p.lease(list(range(40)), 40 + 8)
    assert len(lease.blocks) == 3 and lease.shared == 0 and p.used == 3
    p.release(lease)
    p.release(lease)  # twice is once
    p.check()
    assert p.used == 0 and len(p.free) == 10  # nothing was computed: nothing is cached


def test_a_prompt_that_starts_the_same_way_reuses_whole_blocks_with_their_values():
    p = pool(10)
    first = list(range(100, 140))  # 2 full blocks and 8 tokens
    run(p, first)
    assert len(p.cached) == 2 and p.tokens == 32
    again = p.lease([*first, 7, 8], 50)
    assert again.shared == 2 and again.cached_tokens == 32
    (k, v), *_ = p.prefix(again, 32)
    assert k.shape == (1, HEADS, 32, DIM)
    assert np.array_equal(k[0, 0, :, 0], np.arange(100, 132)) and np.array_equal(
        v[0, 1, :, 3], -np.arange(100, 132)
    )
    last_k, _ = p.prefix(again, 32)[-1]
    assert last_k[0, 0, 0, 0] == 100 + 1000 * (LAYERS - 1)
    p.release(again)
    p.check()


def test_at_least_keep_tokens_are_left_to_compute():
    p = pool(10)
    prompt = list(range(32))
    run(p, prompt)
    assert p.lease(prompt, 40, keep=1).shared == 1  # 31 tokens can be cached: one whole block
    assert p.lease([*prompt, 5], 40, keep=1).shared == 2


def test_concurrent_rows_share_blocks_and_a_duplicate_is_not_written_twice():
    p = pool(12)
    prompt = list(range(48))
    a = p.lease(prompt, 56)
    b = p.lease(prompt, 56)  # joined together: neither is cached yet
    p.commit(a, prompt, kv(prompt))
    p.commit(b, prompt, kv(prompt))
    assert a.blocks[:3] == b.blocks[:3]  # b holds a's blocks and gave its own back
    assert all(p.refs[block] == 2 for block in a.blocks[:3])
    assert p.used == 4 + 1  # 3 shared, and each row's partly filled block for the reply
    p.release(a)
    p.release(b)
    p.check()
    assert p.used == 0 and len(p.cached) == 3


def test_the_least_recently_used_blocks_go_first_and_their_children_are_never_matched():
    p = pool(5)
    old, recent = list(range(32)), list(range(1000, 1032))
    run(p, old)
    run(p, recent)
    touch = p.lease([*recent, 1], 33)  # both of recent's blocks, and the free one
    assert touch.shared == 2
    p.release(touch)  # `old` is now the least recently used
    run(p, list(range(5000, 5032)), reply=16)  # 3 blocks: the free one, then old's two
    assert p.stats.evictions == 2
    again = p.lease([*recent, 1], 33)
    assert again.shared == 2  # the recently used blocks stayed
    p.release(again)
    gone = p.lease([*old, 1], 33)
    assert gone.shared == 0  # evicted blocks are never matched again
    p.release(gone)
    p.check()


def test_a_row_waits_while_running_rows_hold_the_pool_and_joins_once_they_leave():
    p = pool(4)
    holder = p.lease(list(range(40)), 64)  # all 4 blocks
    assert p.lease(list(range(500, 510)), 16) is None
    p.release(holder)
    assert p.lease(list(range(500, 510)), 16) is not None
    p.check()


def test_random_traffic_keeps_the_accounting_whole():
    rng = random.Random(5)
    p = pool(24)
    prefixes = [[rng.randrange(50_000) for _ in range(40)] for _ in range(4)]
    running = []
    for _ in range(400):
        if running and (len(running) > 5 or rng.random() < 0.4):
            lease, tokens = running.pop(rng.randrange(len(running)))
            p.commit(lease, tokens, kv(tokens))
            p.release(lease)
        else:
            tokens = rng.choice(prefixes)[: rng.randrange(1, 41)] + [rng.randrange(50_000) for _ in range(20)]
            lease = p.lease(tokens, len(tokens) + rng.randrange(1, 30))
            if lease is not None:
                p.commit(lease, tokens[: len(tokens) - 1], kv(tokens[: len(tokens) - 1]))  # the prompt
                running.append((lease, tokens))
        p.check()
    for lease, _ in running:
        p.release(lease)
    p.check()
    assert p.used == 0 and p.stats.evictions > 0 and p.stats.hits > 0
    for block, (_, tokens) in p.keys.items():  # every registered block holds the tokens it is named by
        assert np.array_equal(p.storage[0, 0, 0, block, :, 0], np.asarray(tokens, np.float32))
