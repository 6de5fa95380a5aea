"""Generation knobs: ranges, unknown names, the server's max_new_tokens cap, greedy mapping."""

import pytest

from chains.backends.engine import GenerationParams
from chains.errors import InvalidInput
from chains.knobs import validate_knobs


@pytest.mark.parametrize(
    "values",
    [
        {"temperature": -0.1},
        {"temperature": 2.5},
        {"top_p": 0},
        {"top_p": 1.5},
        {"max_new_tokens": 0},
        {"seed": -1},
        {"stop": "not a list"},
        {"temprature": 0.5},
        {"max_new_tokens": "many"},
    ],
)
def test_bad_knobs_are_refused_with_the_knob_named(values):
    with pytest.raises(InvalidInput) as caught:
        validate_knobs(values)
    assert next(iter(values)) in caught.value.message


def test_max_new_tokens_cap():
    with pytest.raises(InvalidInput, match="limit of 100"):
        validate_knobs({"max_new_tokens": 101}, max_new_tokens_limit=100)
    assert validate_knobs({"max_new_tokens": 100}, max_new_tokens_limit=100).max_new_tokens == 100


def test_good_knobs_pass():
    knobs = validate_knobs({"temperature": 0, "top_p": 0.9, "stop": ["\n\n"], "seed": 3})
    assert knobs.model_dump(exclude_none=True) == {
        "temperature": 0,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 3,
    }


def test_greedy_and_sampled_rows_pick_their_own_way():
    import torch

    from chains.backends.sampling import pick

    logits = torch.tensor([[0.0, 5.0, 1.0], [0.0, 5.0, 1.0], [3.0, -30.0, 2.9], [3.0, -30.0, 2.9]])
    rows = [
        GenerationParams(temperature=0.0),
        GenerationParams(temperature=1.0, top_p=0.01),  # nucleus of one token: the most likely
        GenerationParams(temperature=1.0),
        GenerationParams(temperature=1.0),
    ]
    draws = {tuple(pick(logits, rows).tolist()) for _ in range(50)}  # unseeded: new noise each time
    assert {d[:2] for d in draws} == {(1, 1)}
    assert {d[2] for d in draws} == {0, 2}  # sampled rows vary, never the unlikely token 1


def test_degenerate_temperatures_and_logits_fall_back_to_greedy():
    import torch

    from chains.backends.sampling import pick

    assert pick(torch.tensor([[0.0, 9.0, 1.0]]), [GenerationParams(temperature=1e-300)]).tolist() == [1]
    hot = GenerationParams(temperature=1.0)
    assert pick(torch.tensor([[float("nan"), 1.0, 0.0]]), [hot]).shape == (1,)


def test_a_seed_fixes_each_reply_position_and_samples_follow_the_distribution():
    import torch

    from chains.backends.sampling import Noise, pick

    class Row:
        temperature, top_p = 1.0, 1.0

        def __init__(self, seed, position):
            self.noise, self.generated = Noise(seed), position

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))

    def draws(seed):
        return [int(pick(logits, [Row(seed, n)])[0]) for n in range(2000)]

    first = draws(3)
    assert first == draws(3) != draws(4)  # the same seed, the same token at each position
    shares = torch.bincount(torch.tensor(first), minlength=3) / len(first)
    assert torch.allclose(shares, torch.tensor([0.5, 0.3, 0.2]), atol=0.04)  # Gumbel-max draws from p
