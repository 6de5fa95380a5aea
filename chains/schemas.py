"""JSON schemas the LangServe playground can draw: its forms fail on `{"type": "null"}` (a blank page)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema


def drop_nulls(schema: dict[str, Any]) -> None:
    """Remove null types and null defaults from a JSON schema, in place; validation is unchanged."""
    if schema.get("default", 0) is None:
        del schema["default"]
    options = schema.get("anyOf")
    if isinstance(options, list):
        kept = [option for option in options if option != {"type": "null"}]
        if len(kept) == 1:
            del schema["anyOf"]
            schema.update({**kept[0], **schema})
        else:
            schema["anyOf"] = kept
    for value in list(schema.values()):
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, dict):
                drop_nulls(child)


def optional(annotation: Any) -> Any:
    """`annotation | None` that still accepts None but shows only `annotation` in JSON schemas."""
    return Annotated[annotation | SkipJsonSchema[None], Field(json_schema_extra=drop_nulls)]
