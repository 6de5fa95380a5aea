"""Prompt-lookup drafting and the acceptance rule, without a model."""

import random

import pytest
import torch

from chains.backends.sampling import Noise, pick
from chains.backends.speculation import FIRST_PAUSE, MAX_DRAFT, MIN_DRAFT, PAUSE_AFTER, Drafter, accept

pytestmark = pytest.mark.unit


def test_a_draft_is_what_followed_the_longest_earlier_match_of_the_context_end():
    drafter = Drafter([7, 1, 2, 3, 4, 5, 9, 2, 3, 6, 1, 2, 3])
    drafter.length = MAX_DRAFT
    assert drafter.propose(3) == [4, 5, 9]  # "1 2 3" matched before "2 3"
    drafter.extend([8])
    assert drafter.propose(5) == []  # "3 8" never occurred
    drafter.extend([1, 2])
    assert drafter.propose(2) == [3, 8]  # "8 1 2" is new; "1 2" last occurred before "3 8"
    assert drafter.propose(0) == []


def test_the_draft_length_grows_with_acceptance_and_repeated_misses_pause_drafting():
    drafter = Drafter([1, 2, 1, 2, 1, 2])
    assert drafter.length == MIN_DRAFT and drafter.propose(8) == [
        1,
        2,
    ]  # what follows the last match, however short
    drafter.record(MIN_DRAFT, MIN_DRAFT)
    assert drafter.length == 2 * MIN_DRAFT
    for _ in range(10):
        drafter.record(drafter.length, drafter.length)
    assert drafter.length == MAX_DRAFT
    drafter.record(MAX_DRAFT, 1)
    assert drafter.length == MIN_DRAFT  # shrinks to what was accepted, plus one, at least the minimum
    for _ in range(PAUSE_AFTER):
        drafter.record(2, 0)
    assert [drafter.propose(4) for _ in range(FIRST_PAUSE)] == [[]] * FIRST_PAUSE
    assert drafter.propose(4)  # drafting again after the pause
    for _ in range(PAUSE_AFTER):
        drafter.record(2, 0)
    assert drafter.paused == 2 * FIRST_PAUSE  # the next pause is longer
    assert drafter.drafted > drafter.accepted > 0  # totals for the metrics


class Row:
    """What accept and pick read from an engine row."""

    def __init__(self, temperature: float, seed: int, generated: int, top_p: float = 1.0) -> None:
        self.temperature, self.top_p, self.generated, self.noise = temperature, top_p, generated, Noise(seed)


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.3])
def test_accepting_drafts_gives_the_tokens_decoding_one_at_a_time_gives(temperature):
    rng = random.Random(5)
    for case in range(200):
        vocab, steps, generated = 6, rng.randint(1, 5), rng.randint(0, 50)
        logits = torch.randn((steps + 1, vocab), generator=torch.Generator().manual_seed(case)) * 2
        one_by_one = [
            int(pick(logits[j : j + 1], [Row(temperature, case, generated + j, top_p=0.9)])[0])
            for j in range(steps + 1)
        ]
        # drafts that agree with the row for a while, then (sometimes) do not
        agree = rng.randint(0, steps)
        drafts = one_by_one[:agree] + [(t + 1) % vocab for t in one_by_one[agree:steps]]
        kept = accept(logits, drafts, Row(temperature, case, generated, top_p=0.9))
        assert kept == one_by_one[: len(kept)]
        assert len(kept) == agree + 1  # the agreeing drafts, then the row's own token
