"""The prefix cache (the KV block pool) on the embedded model: a follow-up turn reuses the cached
history, no output changes because of it (greedy, and sampling with a seed), and every block given out
comes back."""

from contextlib import contextmanager

import pytest

from chains import build_chat_chain
from chains.backends.engine import GenerationParams
from chains.backends.pool import BLOCK

pytestmark = pytest.mark.model

GREEDY = {"configurable": {"temperature": 0, "max_new_tokens": 24}}


@contextmanager
def without_prefix_cache(backend):
    """The same engine with its pool set aside (a fresh decoder is made once the batch is empty)."""
    core = backend.engine.engine
    core.call(lambda: None).result()  # the last row has given its blocks back
    saved, core.pool = core.pool, None
    try:
        yield
    finally:
        core.pool = saved


@pytest.fixture(autouse=True)
def blocks_add_up(embedded_backend):
    """After each test: no block lost or held by a finished row."""
    yield
    core = embedded_backend.engine.engine
    core.call(lambda: None).result()  # the model thread has finished the step that ended the last row
    pool = core.pool
    pool.check()
    assert pool.used == 0


def conversation(chat, config) -> tuple[list, list]:
    """Three turns, each resending the whole conversation; (replies, cached prompt tokens per turn)."""
    messages, replies, cached = [{"role": "system", "content": "You are a concise assistant."}], [], []
    for question in ["Name a primary colour.", "Name another one.", "And a third?"]:
        messages.append({"role": "user", "content": question})
        reply = chat.invoke({"messages": messages}, config=config)
        messages.append({"role": "assistant", "content": reply.content})
        replies.append(reply.content)
        cached.append((reply.usage_metadata.get("input_token_details") or {}).get("cache_read", 0))
    return replies, cached


def test_follow_up_turns_reuse_the_history_and_answer_exactly_as_without_the_cache(embedded_backend):
    chat = build_chat_chain(embedded_backend)
    pool = embedded_backend.engine.engine.pool
    assert pool is not None and pool.total > 0  # on by default, sized from memory
    with_cache, cached = conversation(chat, GREEDY)
    assert cached[1] > 20 and cached[2] > cached[1]  # each turn reuses the turn before it, growing
    with without_prefix_cache(embedded_backend):
        plain, none = conversation(chat, GREEDY)
    assert none == [0, 0, 0]
    assert with_cache == plain


def test_seeded_sampling_is_the_same_with_and_without_the_cache(embedded_backend):
    model = embedded_backend.engine
    opening = "Once upon a time, in a small village by the sea, where the boats came home, there lived"
    prompt = model.tokenizer(opening * 2).input_ids  # longer than a 16-token block
    params = GenerationParams(max_new_tokens=20, temperature=0.9, top_p=0.95, seed=11)
    first = model.generate([prompt], params)[0]  # leaves prompt and reply in the cache
    again = model.generate([prompt], params)[0]
    assert again.cached_tokens == (len(prompt) - 1) // BLOCK * BLOCK  # whole blocks, one token left
    with without_prefix_cache(embedded_backend):
        plain = model.generate([prompt], params)[0]
    assert first.text == again.text == plain.text and plain.cached_tokens == 0


def test_rows_with_and_without_a_cached_prefix_join_one_batch(embedded_backend):
    model = embedded_backend.engine
    shared = model.tokenizer(" ".join(["The quick brown fox jumps over the lazy dog."] * 6)).input_ids
    params = GenerationParams(max_new_tokens=12)
    model.generate([shared], params)
    prompts = [shared + model.tokenizer(f" Then number {i}").input_ids for i in range(3)]
    prompts.append(model.tokenizer("Something else entirely: the capital of France is").input_ids)
    together = model.generate(prompts, params)
    assert [c.cached_tokens > 0 for c in together] == [True, True, True, False]
    with without_prefix_cache(embedded_backend):
        alone = [model.generate([p], params)[0] for p in prompts]
    assert [c.text for c in together] == [c.text for c in alone]


@contextmanager
def tiny_pool(backend, blocks: int):
    """The engine on a pool of `blocks` blocks for the duration."""
    from chains.backends.pool import allocate, bytes_per_token

    core = backend.engine.engine
    core.call(lambda: None).result()
    saved = core.pool
    core.pool = allocate(core.model, blocks * BLOCK * bytes_per_token(core.model))
    try:
        yield core.pool
    finally:
        core.call(lambda: None).result()
        core.pool = saved


def test_a_row_waits_for_blocks_held_by_running_rows_and_replies_as_it_would_alone(embedded_backend):
    model = embedded_backend.engine
    prompts = [model.tokenizer(f"Story number {i}: once upon a time, a fox").input_ids for i in range(3)]
    params = GenerationParams(max_new_tokens=40)
    alone = [model.generate([p], params)[0].text for p in prompts]
    need = -(-(len(prompts[0]) + 40) // BLOCK)
    with tiny_pool(embedded_backend, 2 * need) as pool:  # room for two rows at once, not three
        together = model.generate(prompts, params)
        assert pool.stats.waits == 1  # the third waited for the first two to leave
        model.engine.call(lambda: None).result()
        pool.check()
        assert pool.used == 0
    assert [c.text for c in together] == alone


def test_a_request_larger_than_the_whole_pool_is_refused_naming_the_setting(embedded_backend):
    from chains.errors import KvPoolTooSmall

    model = embedded_backend.engine
    with tiny_pool(embedded_backend, 4), pytest.raises(KvPoolTooSmall, match="HFCHAIN_KV_CACHE_BYTES"):
        model.generate([model.tokenizer("Hello").input_ids], GenerationParams(max_new_tokens=100))


def test_the_retired_token_setting_still_sizes_the_pool_and_says_what_replaces_it(caplog):
    from chains.backends import build_backend
    from chains.backends.pool import bytes_per_token
    from chains.settings import load_settings

    backend = build_backend(load_settings(backend="local", model=None, prefix_cache_tokens=1000))
    with caplog.at_level("WARNING"):
        backend.engine.load()
    try:
        core = backend.engine.engine
        assert core.pool.total == 1000 * bytes_per_token(core.model) // core.pool.block_bytes  # 62 blocks
        assert "set HFCHAIN_KV_CACHE_BYTES instead" in caplog.text
    finally:
        backend.engine.close()
