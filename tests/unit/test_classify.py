"""Classification math and input rules, with a fake encoder (no model)."""

import numpy as np
import pytest
from pydantic import ValidationError

from chains.classify import ClassifyInput, classify
from chains.classify.methods import EmbeddingMethod, _one_hot
from chains.classify.scoring import sigmoid, softmax, weighted_mean
from chains.errors import InvalidInput
from chains.tokens import EstimatedTokens


class FakeEncoder:
    """Bag-of-words vectors over a tiny vocabulary: texts sharing words are similar."""

    VOCAB = ("good", "great", "bad", "awful", "sport", "match", "about", "text")
    tokens, max_tokens = EstimatedTokens(), 40

    def embed(self, texts):
        rows = np.array([[t.lower().count(w) for w in self.VOCAB] for t in texts], dtype=np.float32) + 0.01
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def run(**fields):
    return classify({"embedding": EmbeddingMethod(FakeEncoder())}, ClassifyInput(**fields), "embedding")


def test_softmax_sums_to_one_and_sigmoid_is_a_probability():
    assert sum(softmax([0.1, 0.5, -2.0], 0.05)) == pytest.approx(1.0)
    assert 0 <= sigmoid(-1000) < sigmoid(0) == 0.5 < sigmoid(1000) <= 1


def test_single_label_scores_sum_to_one_and_pick_the_closest():
    result = run(text="a good, great film", labels=["good", "bad"], descriptions={"good": "good great"})
    assert result["label"] == "good" and sum(result["scores"].values()) == pytest.approx(1.0)
    assert result["method"] == "embedding-zero-shot" and result["chunks"] == 1


def test_scores_do_not_depend_on_label_order():
    first = run(text="an awful match", labels=["good", "bad", "sport"])["scores"]
    second = run(text="an awful match", labels=["sport", "good", "bad"])["scores"]
    assert first == pytest.approx(second)


def test_multi_label_scores_are_independent_with_labels_above():
    result = run(text="good match", labels=["good", "sport", "awful"], multi_label=True, threshold=0.5)
    assert sum(result["scores"].values()) != pytest.approx(1.0) or len(result["labels_above"]) in (0, 1, 2, 3)
    assert all(0 <= p <= 1 for p in result["scores"].values())
    assert result["labels_above"] == [k for k, p in result["scores"].items() if p >= 0.5]


def test_examples_move_the_prototypes():
    examples = [{"text": "awful awful", "label": "x"}, {"text": "great great", "label": "y"}]
    result = run(text="so great", labels=["x", "y"], examples=examples)
    assert result["label"] == "y" and result["method"] == "embedding-few-shot"


def test_long_text_is_split_and_combined_by_tokens():
    text = "good great " * 200 + "bad awful " * 20
    result = run(text=text, labels=["good", "bad"], per_chunk=True)
    assert result["chunks"] > 1 and len(result["per_chunk"]) == result["chunks"]
    assert result["label"] == "good" and sum(result["scores"].values()) == pytest.approx(1.0)


def test_weighted_mean_weights_by_tokens():
    combined = weighted_mean([{"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 1.0}], [3, 1])
    assert combined == {"a": 0.75, "b": 0.25}


def test_constrained_answers_are_parsed_to_one_hot():
    assert _one_hot("Label: Negative.", ["positive", "negative"]) == {"positive": 0.0, "negative": 1.0}
    assert _one_hot("no idea", ["a1", "b1"]) == {"a1": 0.5, "b1": 0.5}


@pytest.mark.parametrize(
    "fields",
    [
        {"text": "", "labels": ["a", "b"]},
        {"text": "   ", "labels": ["a", "b"]},
        {"text": "x", "labels": ["a"]},
        {"text": "x", "labels": ["a", "a"]},
        {"text": "x", "labels": ["a", " "]},
        {"text": "x", "labels": ["a", "b"], "descriptions": {"c": "?"}},
        {"text": "x", "labels": ["a", "b"], "examples": [{"text": "t", "label": "c"}]},
        {"text": "x", "method": "embedding"},
        {"text": "x", "labels": ["a", "b"], "threshold": 2},
        {"text": "x", "labels": ["a", "b"], "method": "magic"},
    ],
)
def test_bad_input_is_refused(fields):
    with pytest.raises(ValidationError):
        ClassifyInput(**fields)


def test_no_labels_and_no_checkpoint_says_what_to_do():
    with pytest.raises(InvalidInput, match="give labels"):
        run(text="x")
