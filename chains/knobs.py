"""Per-request generation knobs: their names, limits, and how chains expose them as configurables."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from langchain_core.runnables import ConfigurableField, Runnable
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chains.errors import InvalidInput
from chains.schemas import optional

KNOB_DESCRIPTIONS = {
    "max_new_tokens": "Most tokens to generate",
    "temperature": "Sampling temperature; 0 means greedy decoding",
    "top_p": "Nucleus sampling: keep the smallest token set with this total probability",
    "stop": "Stop sequences: generation ends before the first one (any length)",
    "seed": "Random seed for reproducible sampling",
    "speculation": "Speculative decoding (prompt lookup) for this request; unset: the server's setting",
    "logprobs": "Report each generated token's log-probability and this many most likely alternatives (0-20)",
}


class GenerationKnobs(BaseModel):
    """Knob values a request may set; unknown names and out-of-range values are refused."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    stop: list[str] | None = Field(None, max_length=16)
    seed: Annotated[int, Field(ge=0, lt=2**32)] | None = None
    speculation: bool | None = None
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None


def validate_knobs(
    values: dict, max_new_tokens_limit: int | None = None, served: Iterable[str] | None = None
) -> GenerationKnobs:
    """Check a request's knob values (against the backend's `served` knobs when given); raise InvalidInput
    that names the knob and the fix."""
    try:
        knobs = GenerationKnobs.model_validate(values)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'configurable'}: {e['msg']}" for e in error.errors()
        )
        raise InvalidInput(f"invalid generation knob: {problems}", knobs=sorted(KNOB_DESCRIPTIONS)) from None
    unserved = sorted(set(knobs.model_fields_set) - set(served)) if served is not None else []
    if unserved:
        raise InvalidInput(
            f"{', '.join(unserved)}: not served by this backend (an endpoint); leave it out, or serve "
            "a local model (HFCHAIN_BACKEND=local)",
            knobs=sorted(served),
        )
    limit = max_new_tokens_limit
    if limit and knobs.max_new_tokens and knobs.max_new_tokens > limit:
        raise InvalidInput(
            f"max_new_tokens={knobs.max_new_tokens} is over this server's limit of {limit}; ask for fewer"
        )
    return knobs


# The types a knob has in /config_schema: never Optional, since the playground's forms cannot draw
# `{"type": "null"}`; a knob left out keeps the model's default (no seed, no stop sequences).
KNOB_TYPES = {
    "max_new_tokens": optional(int),
    "temperature": optional(float),
    "top_p": optional(float),
    "stop": optional(list[str]),
    "seed": optional(int),
    "speculation": optional(bool),
    "logprobs": optional(int),
}


def with_knobs(model: Runnable, field_names: dict[str, str]) -> Runnable:
    """Expose the model's fields as the knobs (knob name -> field name) in config.configurable."""
    fields = {
        field: ConfigurableField(
            id=knob, name=knob, description=KNOB_DESCRIPTIONS[knob], annotation=KNOB_TYPES[knob]
        )
        for knob, field in field_names.items()
    }
    return model.configurable_fields(**fields)
