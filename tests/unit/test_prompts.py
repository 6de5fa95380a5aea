"""Each prompt file has exactly the variables the code fills in."""

import string

import pytest

from chains.prompts import load_prompt

VARIABLES = {
    "chat_system": set(),
    "summarize_map": {"text"},
    "summarize_reduce": {"text"},
    "classify_label": {"label"},
    "classify_hypothesis": {"label"},
    "classify_llm": {"labels", "text"},
    "ask_system": set(),
    "ask_quote": set(),
    "ask_question": {"sources", "question"},
}


@pytest.mark.parametrize(("name", "expected"), VARIABLES.items())
def test_prompt_variables(name, expected):
    fields = {field for _, field, _, _ in string.Formatter().parse(load_prompt(name)) if field is not None}
    assert fields == expected


def test_missing_prompt_names_the_path():
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        load_prompt("nope")
