"""with_structured_output for hfchain's chat models: constrained JSON, a forced tool call, or JSON mode."""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import JsonOutputKeyToolsParser, PydanticToolsParser
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass

from chains.errors import InvalidInput

METHODS = ("json_schema", "function_calling", "json_mode")


def structured_output(
    model: Any, schema: Any, method: str = "json_schema", include_raw: bool = False
) -> Runnable:
    """`model` replying in `schema` (pydantic class, TypedDict, JSON schema dict or OpenAI tool dict)."""
    if method not in METHODS:
        raise InvalidInput(f"method {method!r} is not supported: use one of {', '.join(METHODS)}")
    pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
    if method == "function_calling":
        tool = convert_to_openai_tool(schema)
        name = tool["function"]["name"]
        bound = model.bind_tools([tool], tool_choice=name, parallel_tool_calls=False)
        parser = (
            PydanticToolsParser(tools=[schema], first_tool_only=True)
            if pydantic
            else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
        )
    else:
        if method == "json_mode" or schema is None:
            response_format = {"type": "json_object"}
        else:
            json_schema = convert_to_openai_tool(schema)["function"]
            response_format = {
                "type": "json_schema",
                "json_schema": {"name": json_schema["name"], "schema": json_schema.get("parameters", {})},
            }
        bound = model.bind(response_format=response_format)
        parser = PydanticOutputParser(pydantic_object=schema) if pydantic else JsonOutputParser()
    if not include_raw:
        return bound | parser
    parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
    failed = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=bound) | parsed.with_fallbacks([failed], exception_key="parsing_error")
