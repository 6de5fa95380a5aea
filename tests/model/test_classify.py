"""Classification on real models: the packaged encoder, the embedded LM, tiny saved checkpoints."""

import pytest

from chains import build_classify_chain, build_classify_methods
from chains.backends.encoder import encoder_folder

SENTIMENT = ["positive", "negative"]
OBVIOUS = [
    ("I loved this film, it was wonderful and moving.", "positive"),
    ("A dreadful, boring mess. I hated every minute.", "negative"),
    ("Brilliant acting and a beautiful story.", "positive"),
    ("The worst movie I have seen in years.", "negative"),
]


@pytest.fixture(scope="module")
def methods(embedded_backend, tmp_path_factory):
    folders = {
        name: save_tiny_checkpoint(tmp_path_factory.mktemp(name), labels)
        for name, labels in (
            ("stars", ["one", "two", "three"]),
            ("nli", ["contradiction", "neutral", "entailment"]),
        )
    }
    spec = ",".join(f"{name}={folder}" for name, folder in folders.items())
    return build_classify_methods(embedded_backend, spec)


def save_tiny_checkpoint(folder, labels):
    """A randomly initialised BERT classifier with the encoder's tokenizer (offline)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(encoder_folder())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_obvious_sentiment_with_the_encoder(methods):
    chain = build_classify_chain(methods)
    for text, expected in OBVIOUS:
        result = chain.invoke({"text": text, "labels": SENTIMENT})
        assert result["label"] == expected, (text, result)
        assert sum(result["scores"].values()) == pytest.approx(1.0)


def test_obvious_sentiment_with_the_embedded_lm(methods):
    chain = build_classify_chain(methods)
    results = [chain.invoke({"text": text, "labels": SENTIMENT, "method": "llm"}) for text, _ in OBVIOUS]
    assert all(sum(r["scores"].values()) == pytest.approx(1.0) for r in results)
    assert all(r["method"] == "llm-logprob-calibrated" for r in results)
    # accuracy is measured in benchmarks/classify_eval.py: the 135M model is a fragile classifier
    assert len({round(r["scores"]["positive"], 6) for r in results}) == len(results)  # it reads the text


def test_topics_zero_shot_with_the_encoder(methods):
    chain = build_classify_chain(methods)
    result = chain.invoke(
        {
            "text": "The striker scored twice as United won the cup final.",
            "labels": ["sport", "politics", "technology"],
        }
    )
    assert result["label"] == "sport" and result["method"] == "embedding-zero-shot"


def test_llm_scoring_is_deterministic_and_order_invariant(methods):
    chain = build_classify_chain(methods)
    value = {"text": OBVIOUS[0][0], "method": "llm"}
    first = chain.invoke({**value, "labels": ["positive", "negative", "neutral"]})["scores"]
    again = chain.invoke({**value, "labels": ["neutral", "positive", "negative"]})["scores"]
    assert first == pytest.approx(again)


def test_long_text_over_the_encoder_limit_is_split(methods):
    text = " ".join(text for text, _ in OBVIOUS[::2]) * 30
    result = build_classify_chain(methods).invoke({"text": text, "labels": SENTIMENT, "per_chunk": True})
    assert result["chunks"] > 1 and result["usage"]["tokens"] > 256
    assert result["label"] == "positive"


def test_checkpoint_uses_its_own_labels(methods):
    result = build_classify_chain(methods).invoke({"text": "three stars", "model": "stars"})
    assert set(result["scores"]) == {"one", "two", "three"} and result["method"] == "checkpoint:stars"
    assert sum(result["scores"].values()) == pytest.approx(1.0)


def test_nli_checkpoint_scores_any_labels(methods):
    value = {"text": "a film", "labels": ["cinema", "cooking"], "model": "nli"}
    result = build_classify_chain(methods).invoke(value)
    assert set(result["scores"]) == {"cinema", "cooking"} and result["method"] == "nli:nli"
    multi = build_classify_chain(methods).invoke({**value, "multi_label": True})
    assert all(0 <= p <= 1 for p in multi["scores"].values()) and "labels_above" in multi


def test_concurrent_long_texts_do_not_race_on_the_tokenizer(methods):
    """Splitting counts with the encoder's tokenizer while other threads encode: must not interfere."""
    texts = [
        f"Article {i}. " + "The minister announced a new budget for schools and hospitals. " * 40
        for i in range(8)
    ]
    chain = build_classify_chain(methods)
    results = chain.batch(
        [{"text": t, "labels": ["politics", "sport"]} for t in texts], config={"max_concurrency": 4}
    )
    assert all(r["chunks"] > 1 and r["label"] == "politics" for r in results)
