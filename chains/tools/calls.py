"""Tools in the prompt and tool calls out of the reply (the <tools> / <tool_call> / <tool_response>
convention, for chat templates that have no tool syntax of their own, as SmolLM2's)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

from chains.errors import InvalidInput
from chains.prompts import load_prompt
from chains.tools.grammar import CALL_BEGIN, CALL_END

CALL = re.compile(re.escape(CALL_BEGIN.strip()) + r"\s*(.*?)\s*" + re.escape(CALL_END.strip()), re.DOTALL)


def openai_tools(tools: list[Any]) -> list[dict]:
    """LangChain tools, pydantic models, functions or OpenAI dicts, as OpenAI function tools."""
    converted = []
    for index, tool in enumerate(tools):
        try:
            converted.append(convert_to_openai_tool(tool))
        except Exception as error:  # langchain-core says "not a tool" with several exception types
            raise InvalidInput(f"tools[{index}] is not a tool definition: {error}") from None
    names = [t["function"]["name"] for t in converted]
    if len(set(names)) != len(names):
        raise InvalidInput(f"tool names must be distinct: {names}")
    return converted


def chosen_tools(tools: list[dict], choice: Any) -> tuple[list[dict], bool]:
    """The tools a reply may call and whether it must call one, for an OpenAI or LangChain tool_choice.

    None/"auto", "none", "required"/"any"/True, a tool's name, or {"type": "function", "function": {...}}.
    """
    if choice in (None, "auto"):
        return tools, False
    if choice == "none":
        return [], False
    if choice in ("required", "any", True):
        return tools, True
    name = choice.get("function", {}).get("name") if isinstance(choice, dict) else choice
    picked = [t for t in tools if t["function"]["name"] == name]
    if not picked:
        raise InvalidInput(f"tool_choice names {name!r}, which is not among the tools: {_names(tools)}")
    return picked, True


def _names(tools: list[dict]) -> list[str]:
    return [t["function"]["name"] for t in tools]


def tools_prompt(tools: list[dict]) -> str:
    """The system prompt's tool block (prompts/tools_system.txt)."""
    lines = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return load_prompt("tools_system").format(tools=lines)


def with_tools(messages: list[BaseMessage], tools: list[dict]) -> list[BaseMessage]:
    """The conversation with the tool block added to its system message (or a new one first)."""
    if not tools:
        return messages
    block = tools_prompt(tools)
    if messages and isinstance(messages[0], SystemMessage):
        first = messages[0]
        return [SystemMessage(content=f"{first.text}\n\n{block}"), *messages[1:]]
    return [SystemMessage(content=block), *messages]


def render_call(call: dict) -> str:
    """One tool call as the model writes it."""
    body = json.dumps({"name": call["name"], "arguments": call.get("args", {})}, ensure_ascii=False)
    return f"{CALL_BEGIN}{body}{CALL_END}"


def as_text(message: BaseMessage) -> tuple[str, str] | None:
    """(role, content) for assistant turns with calls and for tool results; None for other messages."""
    if isinstance(message, AIMessage) and message.tool_calls:
        calls = "\n".join(render_call(c) for c in message.tool_calls)
        return "assistant", f"{message.text}\n{calls}".strip()
    if isinstance(message, ToolMessage):
        return "user", load_prompt("tool_response").format(result=message.text)
    return None


def as_native(message: BaseMessage) -> dict | None:
    """An assistant turn with calls or a tool result in the shape chat templates with tools read."""
    if isinstance(message, AIMessage) and message.tool_calls:
        calls = [
            {"type": "function", "id": c.get("id"), "function": {"name": c["name"], "arguments": c["args"]}}
            for c in message.tool_calls
        ]
        return {"role": "assistant", "content": message.text, "tool_calls": calls}
    if isinstance(message, ToolMessage):
        return {"role": "tool", "content": message.text, "tool_call_id": message.tool_call_id}
    return None


def parse_calls(text: str) -> tuple[str, list[dict]]:
    """(the text around the calls, the calls as LangChain tool calls) of a complete reply."""
    calls = []
    for match in CALL.finditer(text):
        try:
            data = json.loads(match.group(1))
        except ValueError:
            continue  # only reachable without a grammar: an unconstrained model wrote a broken call
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            args = data.get("arguments") if isinstance(data.get("arguments"), dict) else {}
            calls.append({"name": data["name"], "args": args, "id": f"call_{uuid.uuid4().hex[:24]}"})
    content = CALL.sub("", text).strip() if calls else text
    return content, [{**c, "type": "tool_call"} for c in calls]


class CallStream:
    """Splits streamed reply text into plain text and complete tool calls, as they arrive.

    Text that might be the start of a `<tool_call>` tag is held back until it is known not to be.
    """

    def __init__(self) -> None:
        self.pending = ""
        self.index = 0

    def feed(self, text: str) -> tuple[str, list[dict]]:
        """(plain text safe to show now, calls completed by this piece)."""
        self.pending += text
        shown, calls = "", []
        while True:
            start = self.pending.find(CALL_BEGIN.strip())
            if start < 0:
                keep = _partial_tag(self.pending)
                shown += self.pending[: len(self.pending) - keep]
                self.pending = self.pending[len(self.pending) - keep :]
                return shown, calls
            shown += self.pending[:start]
            self.pending = self.pending[start:]
            end = self.pending.find(CALL_END.strip())
            if end < 0:
                return shown, calls
            block = self.pending[: end + len(CALL_END.strip())]
            self.pending = self.pending[len(block) :].lstrip("\n")
            _, parsed = parse_calls(block)
            for call in parsed:
                calls.append({**call, "index": self.index})
                self.index += 1

    def flush(self) -> str:
        """What is left at the end: an unfinished call stays text (a reply cut by max_tokens)."""
        rest, self.pending = self.pending, ""
        return rest


def _partial_tag(text: str) -> int:
    """How many trailing characters of `text` could begin a `<tool_call>` tag."""
    tag = CALL_BEGIN.strip()
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0
