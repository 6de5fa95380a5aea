"""What one chat call asks for beyond text: tools (with a tool_choice) or a response format, turned into
the prompt's extra instructions and the grammar that constrains the reply."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage, SystemMessage

from chains.errors import InvalidInput
from chains.prompts import load_prompt
from chains.tools.calls import chosen_tools, openai_tools, with_tools
from chains.tools.grammar import json_grammar, regex_grammar, tools_grammar


@dataclass
class CallPlan:
    """The tools a reply may call, whether it must, and the grammar (None: free text)."""

    tools: list[dict] = field(default_factory=list)
    grammar: str | None = None
    schema_hint: str | None = None
    calls: bool = True  # whether the reply may call the tools (tool_choice "none": described only)

    @property
    def parses_calls(self) -> bool:
        """Whether tool calls are read out of the reply."""
        return bool(self.tools) and self.calls

    def messages(self, messages: list[BaseMessage]) -> list[BaseMessage]:
        """The conversation with the tool block or the JSON instruction in its system message."""
        if self.schema_hint:
            return _with_system(messages, self.schema_hint)
        return with_tools(messages, self.tools)


def plan_call(
    tools: list[Any] | None = None,
    tool_choice: Any = None,
    parallel_tool_calls: bool | None = None,
    response_format: dict | None = None,
    **_: Any,
) -> CallPlan:
    """The plan for a call's keyword arguments (as bind_tools / bind(response_format=...) pass them)."""
    if tools and response_format:
        raise InvalidInput("give tools or response_format, not both")
    if response_format:
        return _format_plan(response_format)
    if not tools:
        return CallPlan()
    usable, forced = chosen_tools(openai_tools(tools), tool_choice)
    if not usable:  # tool_choice "none": the tools stay described, the reply is text
        return CallPlan(tools=openai_tools(tools), calls=False)
    grammar = tools_grammar(usable, forced=forced, parallel=parallel_tool_calls is True)
    return CallPlan(tools=usable, grammar=grammar)


def _format_plan(response_format: dict) -> CallPlan:
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return CallPlan()
    if kind in ("json_object", "json") and isinstance(response_format.get("value"), dict):
        # TGI's shape, which huggingface_hub's chat_completion sends for OpenAI's json_schema
        schema = response_format["value"]
        hint = load_prompt("json_system").format(schema=json.dumps(schema, ensure_ascii=False))
        return CallPlan(grammar=json_grammar(schema), schema_hint=hint)
    if kind == "regex" and isinstance(response_format.get("value"), str):  # TGI's regex grammar
        return CallPlan(grammar=regex_grammar(response_format["value"]))
    if kind == "json_object":
        return CallPlan(
            grammar=json_grammar(None), schema_hint=load_prompt("json_system").format(schema="{}")
        )
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidInput("response_format.json_schema.schema must be a JSON schema object")
        hint = load_prompt("json_system").format(schema=json.dumps(schema, ensure_ascii=False))
        return CallPlan(grammar=json_grammar(schema), schema_hint=hint)
    raise InvalidInput(
        f"response_format.type {kind!r} is not supported: use text, json_object, json_schema or regex"
    )


def _with_system(messages: list[BaseMessage], text: str) -> list[BaseMessage]:
    if messages and isinstance(messages[0], SystemMessage):
        return [SystemMessage(content=f"{messages[0].text}\n\n{text}"), *messages[1:]]
    return [SystemMessage(content=text), *messages]
