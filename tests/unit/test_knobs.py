"""Generation knobs: ranges, unknown names, the server's max_new_tokens cap, greedy mapping."""

import pytest

from chains.backends.model import GenerationParams
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


def test_temperature_zero_means_greedy():
    kwargs = GenerationParams(max_new_tokens=5, temperature=0.0).generate_kwargs()
    assert kwargs["do_sample"] is False and kwargs["temperature"] is None


def test_sampling_kwargs_and_batch_keys():
    params = GenerationParams(temperature=0.7, top_p=0.9, stop=("###",))
    kwargs = params.generate_kwargs()
    assert kwargs["do_sample"] is True and kwargs["temperature"] == 0.7 and kwargs["top_p"] == 0.9
    # stops, lengths and greedy rows batch together; sampling settings must match; seeded jobs run alone
    assert GenerationParams(max_new_tokens=5).batch_key() == GenerationParams(stop=("x",)).batch_key()
    assert params.batch_key() == GenerationParams(temperature=0.7, top_p=0.9).batch_key()
    assert params.batch_key() != GenerationParams(temperature=0.8, top_p=0.9).batch_key()
    assert GenerationParams(seed=1).batch_key() != GenerationParams(seed=1).batch_key()
