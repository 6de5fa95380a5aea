"""Generation chain: {"prompt": str} -> the completion text (never the prompt echoed)."""

from __future__ import annotations

from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chains.backends import Backend


class GenerateInput(BaseModel):
    """Input of /generate."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, description="Text to continue")


def check_prompt(backend: Backend, prompt: str, max_new_tokens: int) -> None:
    """Raise InputTooLong (413) unless the prompt, as sent, fits with room for the reply."""
    budget = backend.budget()
    budget.check(budget.tokens.count_prompt(prompt), max_new_tokens)


def preflight(backend: Backend, value: object, config: dict | None) -> None:
    """The budget check for a raw request input; invalid input is left for schema validation."""
    try:
        prompt = GenerateInput.model_validate(value).prompt
    except ValidationError:
        return
    check_prompt(backend, prompt, backend.max_new_tokens_of(config))


def build_generate_chain(backend: Backend) -> Runnable:
    """prompt -> budget check -> model -> completion string, with the generation knobs configurable."""

    def prompt_of(value: dict | GenerateInput, config: RunnableConfig) -> str:
        prompt = GenerateInput.model_validate(value).prompt
        check_prompt(backend, prompt, backend.max_new_tokens_of(config))
        return prompt

    chain = RunnableLambda(prompt_of, name="prompt") | backend.configurable_llm()
    return chain.with_types(input_type=GenerateInput, output_type=str)
