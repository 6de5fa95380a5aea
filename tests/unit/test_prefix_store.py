"""The prefix store: longest cached prefix by token blocks, verified token by token, bounded, LRU."""

import pytest
import torch

from chains.backends.prefix import BLOCK, PrefixStore

pytestmark = pytest.mark.unit


def layers(tokens: list[int], count: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fake keys/values whose entries are the token ids, so a cut can be checked."""
    row = torch.tensor(tokens, dtype=torch.float32).view(1, 1, -1, 1)
    return [(row.clone(), -row.clone()) for _ in range(count)]


def test_the_longest_cached_prefix_is_found_and_cut_to_its_length():
    store = PrefixStore(10_000)
    history = list(range(100))
    store.add(history, layers(history))
    hit = store.lookup([*history[:70], 999, 998])
    assert hit.length == 70  # beyond the last whole block (64): extended token by token
    keys, values = hit.layers[0]
    assert keys.shape == (1, 1, 70, 1) and keys.flatten().tolist() == history[:70]
    assert torch.equal(values, -keys)


def test_a_prompt_keeps_at_least_its_last_token_to_compute():
    store = PrefixStore(10_000)
    history = list(range(64))
    store.add(history, layers(history))
    assert store.lookup(history).length == 63  # the whole prompt is cached: its last token is recomputed
    assert store.lookup([*history, 5]).length == 64


def test_no_hit_for_other_prompts_or_matches_shorter_than_a_block():
    store = PrefixStore(10_000)
    store.add(list(range(40)), layers(list(range(40))))
    assert store.lookup([7] * 40) is None
    assert store.lookup([*range(BLOCK - 1), 500, *range(30)]) is None
    assert PrefixStore(100).lookup(list(range(50))) is None


def test_an_entry_that_extends_another_replaces_it():
    store = PrefixStore(10_000)
    turn1 = list(range(50))
    turn2 = [*turn1, *range(1000, 1040)]
    store.add(turn1, layers(turn1))
    store.add(turn2, layers(turn2))
    assert len(store) == 1 and store.tokens == len(turn2)
    assert store.lookup([*turn2, 1]).length == len(turn2)
    assert store.covers(turn1) and store.covers(turn2) and not store.covers([*turn2, 5])


def test_least_recently_used_entries_go_first_within_the_bound():
    store = PrefixStore(100)
    a, b, c = (list(range(k, k + 40)) for k in (0, 1000, 2000))
    store.add(a, layers(a))
    store.add(b, layers(b))
    assert store.lookup([*a, 1]) is not None  # a is now the most recent
    store.add(c, layers(c))  # 120 tokens: b goes
    assert store.tokens == 80 and len(store) == 2
    assert store.lookup([*b, 1]) is None and store.lookup([*a, 1]) and store.lookup([*c, 1])
    store.add(list(range(500)), layers(list(range(500))))  # larger than the whole bound: not kept
    assert store.tokens == 80


def test_entries_sharing_a_system_prompt_are_both_found():
    store = PrefixStore(10_000)
    system = list(range(48))
    one, two = [*system, *range(100, 130)], [*system, *range(200, 230)]
    store.add(one, layers(one))
    store.add(two, layers(two))
    assert len(store) == 2
    assert store.lookup([*one, 1]).length == len(one) and store.lookup([*two, 1]).length == len(two)
    assert store.lookup([*system, 7, 7, 7]).length == len(system)
