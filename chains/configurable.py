"""Runnables that declare configurable fields of their own, so /config_schema lists them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.runnables import ConfigurableFieldSpec, RunnableGenerator, RunnableLambda
from langchain_core.runnables.utils import get_unique_config_specs


class DeclaredLambda(RunnableLambda):
    """A RunnableLambda whose config specs are its dependencies' plus `specs`."""

    def __init__(self, func: Callable, specs: Sequence[ConfigurableFieldSpec], name: str | None = None):
        super().__init__(func, name=name)
        self.specs = list(specs)

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        return get_unique_config_specs([*super().config_specs, *self.specs])


class DeclaredGenerator(RunnableGenerator):
    """A RunnableGenerator whose config specs are `specs` (e.g. the knobs of the model it calls)."""

    def __init__(self, transform: Any, atransform: Any, specs: Sequence[ConfigurableFieldSpec], name: str):
        super().__init__(transform, atransform, name=name)
        self.specs = list(specs)

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        return get_unique_config_specs(self.specs)
