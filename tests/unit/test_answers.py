"""The /ask chain's parts: citation grammars that only name given sources, the sources that fit the budget,
the "not found" gate, and the chain over a fake model (free style: no grammar on a remote backend)."""

from __future__ import annotations

import re

import pytest

from chains.budget import Budget
from chains.errors import InputTooLong
from chains.knowledge.answers import (
    ask_style,
    build_ask_chain,
    cited,
    fitting,
    free_pattern,
    quote_pattern,
    relevant,
    sentences,
)
from chains.settings import load_settings
from chains.tokens import EstimatedTokens
from tests.unit.fakes import fake_backend
from tests.unit.knowledge_fakes import knowledge_over

SOURCES = [
    {"text": "Alpha (a) costs $5.", "document_id": "a"},
    {"text": "Beta [b] is blue.", "document_id": "b"},
]


def test_the_quote_grammar_allows_only_the_given_sentences_whole():
    pattern = re.compile(quote_pattern([(1, "Alpha (a) costs $5."), (2, "Beta [b] is blue.")]))
    assert pattern.fullmatch("[1] Alpha (a) costs $5.") and pattern.fullmatch("[2] Beta [b] is blue.")
    assert not pattern.fullmatch("[2] Alpha (a) costs $5.") and not pattern.fullmatch("[1] Alpha (a)")


def test_the_free_grammar_allows_brackets_only_as_known_citations():
    pattern = re.compile(free_pattern(3))
    assert pattern.fullmatch("It is blue [2], and cheap [1][3].")
    assert (
        not pattern.fullmatch("See [4].") and not pattern.fullmatch("a [x] b") and not pattern.fullmatch("]")
    )


def test_citations_are_the_named_sources_in_number_order():
    assert [c["n"] for c in cited("[2] blue, [1] and [2] again, not [7]", SOURCES)] == [1, 2]
    assert cited("no markers", SOURCES) == []


def test_sentences_drop_headings_and_fragments():
    text = "# Title\n\nFirst sentence is here. Ok.\nSecond one\ncontinues on a line!"
    assert sentences(text) == ["First sentence is here.", "Second one continues on a line!"]


def test_only_the_sources_that_fit_the_budget_are_given():
    results = [{"text": "word " * 100, "document_id": str(i)} for i in range(6)]
    budget = Budget(EstimatedTokens(), context_window=700, margin=0)
    kept = fitting(budget, 64, "question?", results, "free")
    assert 1 <= len(kept) < 6 and kept == results[: len(kept)]
    with pytest.raises(InputTooLong, match="fit"):
        fitting(Budget(EstimatedTokens(), context_window=200, margin=0), 64, "q", results, "free")


def test_the_gate_needs_a_close_chunk():
    close, far = {"vector_score": 0.5}, {"vector_score": 0.1}
    assert relevant([far, close], 0.3, "hybrid") and not relevant([far], 0.3, "vector")
    assert not relevant([{"vector_score": None}], 0.3, "hybrid") and relevant(
        [{"vector_score": None}], 0.3, "text"
    )


def test_auto_style_quotes_for_the_embedded_model_only():
    assert ask_style(load_settings()) == "quote"
    assert ask_style(load_settings(model="some/model")) == "free"
    assert ask_style(load_settings(ask_style="free")) == "free"


def test_the_chain_answers_with_citations_or_says_not_found(tmp_path):
    knowledge = knowledge_over(f"sqlite:///{tmp_path / 'd.db'}")
    knowledge.create("default", "c")
    knowledge.ingest("default", "c", [knowledge.prepare_text("pump", "The pump needs part 7730 yearly.")])
    chain = build_ask_chain(knowledge, fake_backend(["It needs part 7730 [1], see [9]."]), min_score=0.3)
    out = chain.invoke({"question": "Which part does the pump need?", "collection": "c"})
    assert out["found"] and out["style"] == "free" and out["sources_used"] == 1
    assert [c["document_id"] for c in out["citations"]] == ["pump"]  # [9] names nothing: not a citation
    assert out["content"].startswith(out["answer"]) and "Sources:\n[1] pump" in out["content"]
    missing = chain.invoke({"question": "zebra migration routes", "collection": "c"})
    assert not missing["found"] and missing["citations"] == [] and "do not say" in missing["answer"]


def test_quoted_sentences_are_cut_to_the_replys_room():
    from chains.knowledge.answers import _cut_to_fit

    long = " ".join(f"word{i}" for i in range(100))
    cut = _cut_to_fit(2, long, lambda text: len(text.split()) <= 11)
    assert long.startswith(cut) and 1 <= len(cut.split()) <= 10
