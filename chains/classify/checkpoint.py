"""Classifier checkpoints: sequence-classification models and NLI (zero-shot) models, by hub id or folder."""

from __future__ import annotations

import copy
import threading
from typing import Any

from cachetools import LRUCache

from chains.classify.export import chosen_runtime
from chains.classify.methods import Distribution
from chains.classify.registry import Registry
from chains.classify.scoring import sigmoid, softmax
from chains.errors import InvalidInput
from chains.prompts import load_prompt
from chains.tenants.caller import DEFAULT_TENANT
from chains.tokens import Tokens


def parse_classifiers(spec: str | None) -> dict[str, str]:
    """'name=source,source2' -> {name: source, basename(source2): source2}."""
    entries: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in (spec or "").split(","))):
        name, _, source = item.rpartition("=")
        entries[name or source.rstrip("/").rsplit("/", 1)[-1]] = source
    return entries


class Checkpoint:
    """One sequence classifier (a transformers model or its ONNX graph), loaded on first use."""

    def __init__(self, source: str, runtime: str = "torch") -> None:
        self.source = source
        self.runtime = runtime
        self._loaded: tuple[Any, Any, Any] | None = None  # (tokenizer, config, model)
        self._tokens: Tokens | None = None
        self._lock = threading.Lock()

    def load(self) -> tuple[Any, Any]:
        """(tokenizer, config)."""
        with self._lock:
            if self._loaded is None:
                from transformers import AutoConfig, AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(self.source)
                config = AutoConfig.from_pretrained(self.source)
                self._loaded = (tokenizer, config, self._model())
                # counting gets its own copy: logits() changes the tokenizer's padding/truncation state
                self._tokens = Tokens(copy.deepcopy(tokenizer))
            return self._loaded[:2]

    def _model(self) -> Any:
        if self.runtime == "torch":
            from transformers import AutoModelForSequenceClassification

            return AutoModelForSequenceClassification.from_pretrained(self.source).eval()
        from chains.classify.export import OnnxModel, onnx_path

        return OnnxModel(onnx_path(self.source, self.runtime))

    @property
    def tokens(self) -> Tokens:
        """The checkpoint's tokenizer, for counting and splitting."""
        self.load()
        return self._tokens

    @property
    def labels(self) -> list[str]:
        config = self.load()[1]
        return [config.id2label[i] for i in range(config.num_labels)]

    @property
    def entailment(self) -> int | None:
        """Index of the 'entailment' logit for NLI checkpoints, else None."""
        lowered = [label.lower() for label in self.labels]
        return lowered.index("entailment") if "entailment" in lowered else None

    def logits(self, first: list[str], second: list[str] | None = None) -> list[list[float]]:
        """Logits per text (or text pair), SLICE at a time."""
        rows = []
        for start in range(0, len(first), SLICE):
            pair = second[start : start + SLICE] if second is not None else None
            rows += self._logits(first[start : start + SLICE], pair)
        return rows

    def _logits(self, first: list[str], second: list[str] | None) -> list[list[float]]:
        self.load()
        tokenizer, _, model = self._loaded
        tensors = "pt" if self.runtime == "torch" else "np"
        with self._lock:  # the fast tokenizer's padding/truncation state is per instance
            encoded = tokenizer(first, second, padding=True, truncation=True, return_tensors=tensors)
        if self.runtime != "torch":
            return model.logits(encoded)
        import torch

        with torch.inference_mode():
            return model(**encoded).logits.float().tolist()


TRAINED_KEPT = 8  # trained classifiers kept loaded (least recently used unloaded first)
SLICE = 32  # texts (or chunks) per forward pass: one large request cannot raise the runtime's peak memory


class CheckpointMethod:
    """Scores from a configured checkpoint: its own labels (softmax/sigmoid), or NLI for any labels."""

    def __init__(self, sources: dict[str, str], registry: Registry | None = None) -> None:
        self.checkpoints = {name: Checkpoint(src, chosen_runtime(src)) for name, src in sources.items()}
        self.default = next(iter(self.checkpoints), None)
        self.registry = registry
        # (tenant, name) -> (card stamp, loaded checkpoint)
        self._trained: LRUCache = LRUCache(maxsize=TRAINED_KEPT)

    def pick(self, value: Any) -> Checkpoint:
        """The configured checkpoint `value.model` names (shared by every tenant), else the tenant's own."""
        name = value.model or self.default
        if name in self.checkpoints:
            return self.checkpoints[name]
        tenant = getattr(value, "_tenant", DEFAULT_TENANT)
        registry = self.registry.tenant(tenant) if self.registry is not None else None
        card = registry.card(name) if registry is not None and name else None
        if card is None:
            self._trained.pop((tenant, name), None)  # deleted: unloaded
            trained = registry.names() if registry is not None else []
            known = ", ".join([*self.checkpoints, *trained]) or "none (train one, or set HFCHAIN_CLASSIFIER)"
            if name is None:
                raise InvalidInput(f"give labels, or a classifier by name (model): {known}")
            raise InvalidInput(f"unknown classifier {name!r}: the ones here are {known}")
        stamp = (card.get("trained_at"), card.get("runtime"), card.get("exported_at"))
        known, checkpoint = self._trained.get((tenant, name), (None, None))
        if known != stamp:  # new, retrained under the same name, or exported again
            folder = str(registry.path(name))
            checkpoint = Checkpoint(folder, chosen_runtime(folder, card))
            self._trained[(tenant, name)] = (stamp, checkpoint)
        return checkpoint

    def describe(self, value: Any) -> str:
        kind = "nli" if self.pick(value).entailment is not None else "checkpoint"
        return f"{kind}:{value.model or self.default}"

    def limits(self, value: Any) -> tuple[Tokens, int, None]:
        checkpoint = self.pick(value)
        tokenizer, config = checkpoint.load()
        limit = getattr(config, "max_position_embeddings", 512) - 3
        if checkpoint.entailment is not None:  # room for the hypothesis too
            limit -= max(len(tokenizer(self._hypothesis(label)).input_ids) for label in value.labels or [""])
        return checkpoint.tokens, min(limit, tokenizer.model_max_length - 3), None

    def scores(self, texts: list[str], value: Any) -> list[Distribution]:
        checkpoint = self.pick(value)
        if checkpoint.entailment is not None:
            return [self._nli(checkpoint, text, value) for text in texts]
        own = checkpoint.labels
        wanted = value.labels or own
        if set(wanted) - set(own):
            raise InvalidInput(f"this classifier's labels are {own}: leave labels out or use a subset")
        index = [own.index(label) for label in wanted]
        results = []
        for row in checkpoint.logits(texts):
            picked = [row[i] for i in index]
            if value.multi_label:
                results.append({label: sigmoid(x) for label, x in zip(wanted, picked, strict=True)})
            else:
                results.append(dict(zip(wanted, softmax(picked), strict=True)))
        return results

    def _hypothesis(self, label: str) -> str:
        return load_prompt("classify_hypothesis").format(label=label)

    def _nli(self, checkpoint: Checkpoint, text: str, value: Any) -> Distribution:
        labels = value.labels
        if not labels:
            raise InvalidInput("an NLI classifier needs labels: give two or more")
        rows = checkpoint.logits([text] * len(labels), [self._hypothesis(label) for label in labels])
        entail = checkpoint.entailment
        if value.multi_label:
            lowered = [lab.lower() for lab in checkpoint.labels]
            contradiction = lowered.index("contradiction") if "contradiction" in lowered else 1 - entail
            return {
                lab: softmax([r[contradiction], r[entail]])[1] for lab, r in zip(labels, rows, strict=True)
            }
        return dict(zip(labels, softmax([r[entail] for r in rows]), strict=True))
