"""Generation chain: {"prompt": str} -> the completion text (never the prompt echoed)."""

from __future__ import annotations

from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import BaseModel, ConfigDict, Field

from chains.backends import Backend


class GenerateInput(BaseModel):
    """Input of /generate."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, description="Text to continue")


def _prompt_of(value: dict | GenerateInput) -> str:
    return GenerateInput.model_validate(value).prompt


def build_generate_chain(backend: Backend) -> Runnable:
    """prompt -> model -> completion string, with the generation knobs configurable."""
    chain = RunnableLambda(_prompt_of, name="prompt") | backend.configurable_llm()
    return chain.with_types(input_type=GenerateInput, output_type=str)
