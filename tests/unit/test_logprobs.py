"""Log-probability entries without a model: the distribution they are read from, pieces that carry them,
bytes of partial characters, and the knob refused by a backend that does not serve it."""

import math

import pytest
import torch

from chains.backends.logprobs import Piece, entry, joined, scored, token_bytes
from chains.errors import InvalidInput
from chains.knobs import validate_knobs

pytestmark = pytest.mark.unit


class Row:
    def __init__(self, temperature: float = 0.0, top_p: float = 1.0) -> None:
        self.temperature, self.top_p = temperature, top_p


class Tokenizer:
    """Three byte-level tokens: "a", " b" and the first byte of "é" (0xC3 in GPT-2's alphabet: "Ã")."""

    def decode(self, ids):
        return "".join({0: "a", 1: " b", 2: "\ufffd"}[i] for i in ids)

    def convert_ids_to_tokens(self, token):
        return {0: "a", 1: "Ġb", 2: "Ã"}[token]


def test_greedy_rows_read_the_models_distribution_and_sampled_rows_their_nucleus():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    token, logprob, top = scored(logits, Row(), 0, 4)
    assert token == 0 and logprob == pytest.approx(float(torch.log_softmax(logits.double(), -1)[0]))
    assert [i for i, _ in top] == [0, 1, 2, 3]
    _, logprob, top = scored(logits, Row(temperature=1.0, top_p=0.7), 1, 4)
    assert [i for i, _ in top] == [0, 1]  # the rest is outside the nucleus: not listed
    assert sum(math.exp(v) for _, v in top) == pytest.approx(1.0)


def test_a_masked_token_gets_openais_floor_not_minus_infinity():
    logits = torch.tensor([0.0, -math.inf])
    made = entry(Tokenizer(), scored(logits, Row(), 1, 0))
    assert made["logprob"] == -9999.0 and made["top_logprobs"] == []


def test_a_token_holding_part_of_a_character_gives_its_own_bytes():
    assert token_bytes(Tokenizer(), 1) == (" b", [32, 98])
    assert token_bytes(Tokenizer(), 2) == ("\ufffd", [0xC3])


def test_joined_pieces_keep_every_entry_in_order():
    one, two = Piece("a", [{"token": "a"}]), Piece(" b", [{"token": " b"}])
    both = joined([one, two])
    assert both == "a b" and [e["token"] for e in both.logprobs] == ["a", " b"]
    assert type(joined(["a", "b"])) is str


def test_a_knob_the_backend_does_not_serve_is_a_400_naming_it():
    assert validate_knobs({"logprobs": 3}, served={"logprobs": "logprobs"}).logprobs == 3
    with pytest.raises(InvalidInput, match="logprobs: not served by this backend"):
        validate_knobs({"logprobs": 3, "temperature": 0.5}, served={"temperature": "temperature"})
    with pytest.raises(InvalidInput, match="logprobs"):
        validate_knobs({"logprobs": 21})
