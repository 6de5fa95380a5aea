"""Classification methods; each gives (tokens, limit, measure) for splitting and scores per chunk."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from chains.classify.scoring import sigmoid, softmax
from chains.errors import InvalidInput
from chains.prompts import load_prompt
from chains.tokens import Tokens

Distribution = dict[str, float]


def _require_labels(value: Any) -> list[str]:
    if not value.labels:
        raise InvalidInput("this method needs labels: give two or more")
    return value.labels


class EmbeddingMethod:
    """Similarity of the text to label descriptions (zero-shot) or label prototypes (few-shot)."""

    temperature = 0.05  # cosine gaps between labels are small: sharpen them
    multi_center = 0.25  # multi_label: similarity that maps to 0.5
    cache_size = 256  # label/example sets whose anchors are kept

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self._anchors: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def limits(self, value: Any) -> tuple[Tokens, int, None]:
        """The encoder's tokenizer and input length (256 tokens for all-MiniLM-L6-v2)."""
        return self.encoder.tokens, self.encoder.max_tokens, None

    def describe(self, value: Any) -> str:
        return "embedding-few-shot" if value.examples else "embedding-zero-shot"

    def scores(self, texts: list[str], value: Any) -> list[Distribution]:
        labels = _require_labels(value)
        similarities = self.encoder.embed(texts) @ self.anchors(value).T
        return [self._probabilities(row, labels, value.multi_label) for row in similarities]

    def _probabilities(self, row: Any, labels: list[str], multi: bool) -> Distribution:
        if multi:
            pairs = zip(labels, row, strict=True)
            return {label: sigmoid(s, self.multi_center, self.temperature) for label, s in pairs}
        return dict(zip(labels, softmax(list(row), self.temperature), strict=True))

    def anchors(self, value: Any) -> Any:
        """One unit vector per label: its description, averaged with its examples; cached per set."""
        descriptions = [self.description(label, value) for label in value.labels]
        examples = tuple((e.text, e.label) for e in value.examples or ())
        key = (tuple(value.labels), tuple(descriptions), examples)
        with self._lock:
            if key in self._anchors:
                self._anchors[key] = self._anchors.pop(key)  # most recently used last
                return self._anchors[key]
        anchors = self._build(value.labels, descriptions, examples)
        with self._lock:
            self._anchors[key] = anchors
            while len(self._anchors) > self.cache_size:
                self._anchors.pop(next(iter(self._anchors)))  # least recently used
        return anchors

    def description(self, label: str, value: Any) -> str:
        given = (value.descriptions or {}).get(label)
        return given or load_prompt("classify_label").format(label=label)

    def _build(self, labels: list[str], descriptions: list[str], examples: tuple) -> Any:
        import numpy as np

        vectors = self.encoder.embed(descriptions + [text for text, _ in examples])
        anchors = []
        for i, label in enumerate(labels):
            rows = [i] + [len(labels) + j for j, (_, lab) in enumerate(examples) if lab == label]
            mean = vectors[rows].mean(axis=0)
            anchors.append(mean / np.linalg.norm(mean))
        return np.stack(anchors)


class LLMMethod:
    """The local causal LM scores each label as the assistant's answer: mean log-prob of its tokens.

    Scores are calibrated against a content-free input ("N/A"): small models favour some labels
    whatever the text, and subtracting that prior removes the bias.
    """

    content_free = "N/A"

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def describe(self, value: Any) -> str:
        return "llm-logprob-calibrated"

    def limits(self, value: Any) -> tuple[Tokens, int, Callable[[str], int]]:
        budget = self.engine.budget
        labels = _require_labels(value)
        longest = max(len(budget.tokens.text_ids(label)) for label in labels)
        return (
            budget.tokens,
            budget.context_window - budget.margin - longest,
            lambda t: len(self.prefix(t, value)),
        )

    def prefix(self, text: str, value: Any) -> list[int]:
        """Token ids of the conversation that asks for the label (few-shot examples as earlier turns)."""
        template = load_prompt("classify_llm")
        labels = ", ".join(sorted(value.labels))  # sorted: scores must not depend on label order
        messages = []
        for example in value.examples or ():
            messages += [
                {"role": "user", "content": template.format(labels=labels, text=example.text)},
                {"role": "assistant", "content": example.label},
            ]
        messages.append({"role": "user", "content": template.format(labels=labels, text=text)})
        return self.engine.tokens.chat_ids(messages)

    def scores(self, texts: list[str], value: Any) -> list[Distribution]:
        if value.multi_label:
            raise InvalidInput("multi_label is not supported by the llm method: use embedding or checkpoint")
        labels = _require_labels(value)
        label_ids = [self.engine.tokens.text_ids(label) for label in labels]
        prior = self.engine.run(label_logprobs, self.prefix(self.content_free, value), label_ids)
        results = []
        for text in texts:
            logprobs = self.engine.run(label_logprobs, self.prefix(text, value), label_ids)
            calibrated = [lp - base for lp, base in zip(logprobs, prior, strict=True)]
            results.append(dict(zip(labels, softmax(calibrated), strict=True)))
        return results


def label_logprobs(model: Any, prefix: list[int], labels: list[list[int]]) -> list[float]:
    """Mean log-probability of each label's tokens after `prefix`; the prefix is computed once."""
    if hasattr(model, "label_logprobs"):  # the ONNX runtime scores with its own graph
        return model.label_logprobs(prefix, labels)
    import torch

    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prefix], device=model.device), use_cache=True)
        cache, last = out.cache, out.logits[0, -1]
        scores = []
        for ids in labels:
            step = model(
                input_ids=torch.tensor([ids], device=model.device),
                cache=copy.deepcopy(cache),
                use_cache=True,
            )
            logits = torch.cat([last[None], step.logits[0, :-1]]).float()
            logp = torch.log_softmax(logits, dim=-1)[torch.arange(len(ids)), torch.tensor(ids)]
            scores.append(logp.mean().item())
    return scores


class ConstrainedMethod:
    """Any chat model (e.g. an endpoint): ask for one of the labels, parse the answer (one-hot)."""

    metered_by_callbacks = True  # a LangChain model run: its tokens reach the caller's meter on their own

    def __init__(self, chat_model: Any, budget: Callable[[], Any]) -> None:
        self.chat_model, self.budget = chat_model, budget

    def describe(self, value: Any) -> str:
        return "llm-constrained"

    def limits(self, value: Any) -> tuple[Any, int, Callable[[str], int]]:
        budget = self.budget()
        template, labels = load_prompt("classify_llm"), ", ".join(sorted(_require_labels(value)))

        def measure(text: str) -> int:
            return budget.tokens.count_chat(
                [{"role": "user", "content": template.format(labels=labels, text=text)}]
            )

        return budget.tokens, budget.limit(16), measure

    def scores(self, texts: list[str], value: Any) -> list[Distribution]:
        labels, template = _require_labels(value), load_prompt("classify_llm")
        prompts = [[("human", template.format(labels=", ".join(sorted(labels)), text=t))] for t in texts]
        config = {"configurable": {"temperature": 0, "max_new_tokens": 16}}
        answers = [reply.content for reply in self.chat_model.batch(prompts, config)]
        return [_one_hot(answer, labels) for answer in answers]


def _one_hot(answer: str, labels: list[str]) -> Distribution:
    """1 for the label the answer names first (uniform when it names none)."""
    lowered = answer.lower()
    found = sorted((lowered.find(label.lower()), label) for label in labels if label.lower() in lowered)
    if not found:
        return {label: 1 / len(labels) for label in labels}
    return {label: float(label == found[0][1]) for label in labels}
