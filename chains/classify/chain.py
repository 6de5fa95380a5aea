"""Classification chain: a text and labels -> a probability for every label, for texts of any length."""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.callbacks import dispatch_custom_event
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from chains.budget import split_text
from chains.classify.scoring import weighted_mean
from chains.errors import InvalidInput
from chains.schemas import drop_nulls
from chains.tenants.caller import DEFAULT_TENANT, caller_of, tenant_of
from chains.tenants.meter import USAGE_EVENT

Method = Literal["embedding", "llm", "checkpoint"]


class Example(BaseModel):
    """A labelled example for few-shot classification."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    label: str = Field(min_length=1)


class ClassifyInput(BaseModel):
    """Input of /classify (its schema without null types, so the playground can draw it)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=drop_nulls)

    text: str = Field(min_length=1, description="The text to classify, of any length")
    labels: list[str] | None = Field(
        None, description="Two or more distinct labels (optional with a classifier checkpoint)"
    )
    multi_label: bool = Field(False, description="Score each label independently")
    descriptions: dict[str, str] | None = Field(None, description="Label -> description (embedding method)")
    examples: list[Example] | None = Field(None, description="Labelled examples (few-shot)")
    method: Method | None = Field(None, description="embedding (default), llm or checkpoint")
    model: str | None = Field(None, description="A trained or configured classifier, by name")
    threshold: float = Field(0.5, ge=0, le=1, description="multi_label: labels at or above it")
    per_chunk: bool = Field(False, description="Also return each chunk's distribution")
    _tenant: str = PrivateAttr(DEFAULT_TENANT)  # whose trained classifiers `model` names (from the config)

    def for_tenant(self, tenant: str) -> ClassifyInput:
        """This request, reading `model` among `tenant`'s classifiers."""
        self._tenant = tenant
        return self

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("text is blank: send the text to classify")
        return text

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: list[str] | None) -> list[str] | None:
        if labels is None:
            return None
        labels = [label.strip() for label in labels]
        if any(not label for label in labels):
            raise ValueError("labels must not be empty strings")
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must be distinct: {labels}")
        if len(labels) < 2:
            raise ValueError("give at least two labels")
        return labels

    @model_validator(mode="after")
    def _consistent(self) -> ClassifyInput:
        known = set(self.labels or [])
        if self.labels and self.descriptions and not set(self.descriptions) <= known:
            raise ValueError(f"descriptions name unknown labels: {sorted(set(self.descriptions) - known)}")
        if self.labels and self.examples and {e.label for e in self.examples} - known:
            raise ValueError("examples use labels that are not in labels")
        if self.labels is None and self.method in ("embedding", "llm"):
            raise ValueError(f"the {self.method} method needs labels: give two or more")
        return self


class ClassifyOutput(BaseModel):
    """Output of /classify."""

    label: str = Field(description="The most probable label")
    scores: dict[str, float] = Field(description="Label -> probability (sum to 1 unless multi_label)")
    method: str = Field(description="Which method produced the scores")
    chunks: int = Field(description="Pieces the text was split into to fit the classifier")
    usage: dict[str, int] = Field(description="tokens: input tokens the classifier read")
    labels_above: list[str] | None = Field(None, description="multi_label: labels with score >= threshold")
    per_chunk: list[dict[str, float]] | None = None


def method_name(methods: dict, value: ClassifyInput, default: str) -> str:
    """The method a request runs: as asked, else a checkpoint when it names one or gives no labels."""
    name = value.method or ("checkpoint" if value.model or value.labels is None else default)
    if name not in methods:
        if value.model:
            raise InvalidInput(
                f"unknown classifier {value.model!r}: none is configured (set HFCHAIN_CLASSIFIER)"
            )
        if value.labels is None:
            raise InvalidInput("give labels (two or more): no classifier checkpoint is configured")
        raise InvalidInput(f"method {name!r} is not available here: use one of {sorted(methods)}")
    return name


def classify(methods: dict, value: ClassifyInput, default: str) -> dict:
    """Split the text to the method's limit, score each chunk, combine them weighted by tokens."""
    method = methods[method_name(methods, value, default)]
    tokens, limit, measure = method.limits(value)
    chunks = split_text(value.text, tokens, limit, measure=measure)
    distributions = method.scores([chunk.text for chunk in chunks], value)
    weights = [chunk.tokens for chunk in chunks]
    scores = weighted_mean(distributions, weights)
    output = {
        "label": max(scores, key=scores.get),
        "scores": scores,
        "method": method.describe(value),
        "chunks": len(chunks),
        "usage": {"tokens": sum(weights)},
    }
    if value.multi_label:
        output["labels_above"] = [label for label, p in scores.items() if p >= value.threshold]
    if value.per_chunk:
        output["per_chunk"] = distributions
    return output


def build_classify_methods(backend: Any, classifiers: str | None = None, registry: Any = None) -> dict:
    """The methods this process can run: the packaged encoder, the backend's LM, configured checkpoints
    and the classifiers trained into `registry` (chains/classify/registry.py)."""
    from chains.backends.batching import BatchedEncoder
    from chains.backends.encoder import shared_encoder
    from chains.classify.checkpoint import CheckpointMethod, parse_classifiers
    from chains.classify.methods import ConstrainedMethod, EmbeddingMethod, LLMMethod

    # one encoder per process; concurrent requests' texts encoded in one batch
    methods: dict = {"embedding": EmbeddingMethod(BatchedEncoder(shared_encoder()))}
    if backend.engine is not None:
        methods["llm"] = LLMMethod(backend.engine)
    else:
        methods["llm"] = ConstrainedMethod(backend.configurable_chat_model(), backend.budget)
    sources = parse_classifiers(classifiers)
    if sources or registry is not None:
        methods["checkpoint"] = CheckpointMethod(sources, registry)
    return methods


def preflight(methods: dict, value: object, default: str, tenant: str = DEFAULT_TENANT) -> None:
    """Refuse (422) an unknown method or classifier before anything is streamed."""
    try:
        request = ClassifyInput.model_validate(value).for_tenant(tenant)
    except ValidationError:
        return  # schema validation reports it
    if method_name(methods, request, default) == "checkpoint":
        methods["checkpoint"].pick(request)


def build_classify_chain(methods: dict, default: str = "embedding") -> Runnable:
    """{"text", "labels", ...} -> {"label", "scores", "method", "chunks", "usage"}."""

    def run(value: dict | ClassifyInput, config: RunnableConfig) -> dict:
        request = ClassifyInput.model_validate(value).for_tenant(tenant_of(config))
        output = classify(methods, request, default)
        method = methods[method_name(methods, request, default)]
        if caller_of(config) is not None and not getattr(method, "metered_by_callbacks", False):
            # the tokens the classifier read count for the caller's quota like a prompt's
            dispatch_custom_event(USAGE_EVENT, {"prompt_tokens": output["usage"]["tokens"]}, config=config)
        return output

    chain = RunnableLambda(run, name="classify")
    return chain.with_types(input_type=ClassifyInput, output_type=ClassifyOutput)
