"""The Messages API's request, and its translation into the chat chain's input (OpenAI-style messages)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chains.errors import InvalidInput


class Tool(BaseModel):
    """A client tool: its name, description and JSON schema of its input."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    input_schema: dict[str, Any]


class ToolChoice(BaseModel):
    """auto (the model decides), any (some tool), tool (the one named), none."""

    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Message(BaseModel):
    """A turn: text, or content blocks (text, tool_use from the assistant, tool_result from the user)."""

    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class CountTokensRequest(BaseModel):
    """What POST /v1/messages/count_tokens reads: the prompt parts of a Messages request."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, description="Any name: this server serves one model")
    messages: list[Message] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    tools: list[Tool] | None = Field(None, max_length=128)
    tool_choice: ToolChoice | None = None

    def chat_input(self) -> dict[str, Any]:
        """The chat chain's input: OpenAI-style messages, tools and tool_choice."""
        messages = [{"role": "system", "content": _system_text(self.system)}] if self.system else []
        for index, message in enumerate(self.messages):
            messages += _turn(index, message)
        value: dict[str, Any] = {"messages": messages}
        if self.tools:
            value["tools"] = [_function(tool) for tool in self.tools]
        if self.tool_choice:
            value.update(_choice(self.tool_choice, self.tools))
        return value


class MessagesRequest(CountTokensRequest):
    """The parts of Anthropic's Messages request that hfchain serves; other fields are ignored."""

    max_tokens: int = Field(ge=1, description="Most tokens to generate (required, as in Anthropic's API)")
    stop_sequences: list[str] | None = Field(None, max_length=16)
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, gt=0, le=1)
    stream: bool = False

    def knobs(self) -> dict[str, Any]:
        """The request's generation knobs, by their hfchain names."""
        knobs = {
            "max_new_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop_sequences or None,
        }
        return {k: v for k, v in knobs.items() if v is not None}


def _system_text(system: str | list[dict[str, Any]]) -> str:
    if isinstance(system, str):
        return system
    return "\n\n".join(_text_block(block, "system") for block in system)


def _text_block(block: dict[str, Any], where: str) -> str:
    if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
        raise InvalidInput(f"{where}: only text blocks ({{'type': 'text', 'text': ...}}) are read here")
    return block["text"]


def _turn(index: int, message: Message) -> list[dict[str, Any]]:
    """One Anthropic turn as OpenAI-style messages: a user turn's tool results become tool messages
    (before its text), an assistant turn's tool_use blocks become its tool_calls."""
    where = f"messages[{index}]"
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    texts, calls, results = [], [], []
    for number, block in enumerate(message.content):
        kind, at = block.get("type"), f"{where}.content[{number}]"
        if kind == "text":
            texts.append(_text_block(block, at))
        elif kind == "tool_use" and message.role == "assistant":
            calls.append(_call(block, at))
        elif kind == "tool_result" and message.role == "user":
            results.append(_result(block, at))
        elif kind in ("thinking", "redacted_thinking"):
            continue  # a reasoning trace from another model: not shown to this one
        else:
            raise InvalidInput(
                f"{at}: a {kind!r} block is not read here in a {message.role} turn; send text, tool_use "
                "(assistant) or tool_result (user) blocks"
            )
    if message.role == "assistant":
        turn = {"role": "assistant", "content": "".join(texts) or None}
        return [{**turn, "tool_calls": calls} if calls else {**turn, "content": "".join(texts)}]
    return results + ([{"role": "user", "content": "\n\n".join(texts)}] if texts or not results else [])


def _call(block: dict[str, Any], at: str) -> dict[str, Any]:
    if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
        raise InvalidInput(f"{at}: a tool_use block needs an id and a name")
    arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
    return {
        "id": block["id"],
        "type": "function",
        "function": {"name": block["name"], "arguments": arguments},
    }


def _result(block: dict[str, Any], at: str) -> dict[str, Any]:
    if not isinstance(block.get("tool_use_id"), str):
        raise InvalidInput(f"{at}: a tool_result block needs the tool_use_id it answers")
    content = block.get("content", "")
    if isinstance(content, list):
        content = "\n\n".join(_text_block(part, at) for part in content)
    if not isinstance(content, str):
        raise InvalidInput(f"{at}: a tool_result's content is a string or a list of text blocks")
    text = f"Error: {content}" if block.get("is_error") else content
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": text}


def _function(tool: Tool) -> dict[str, Any]:
    function = {"name": tool.name, "parameters": tool.input_schema}
    return {"type": "function", "function": {**function, "description": tool.description or ""}}


def _choice(choice: ToolChoice, tools: list[Tool] | None) -> dict[str, Any]:
    """tool_choice (and parallel_tool_calls) as the chat chain takes them."""
    if choice.type != "none" and not tools:
        raise InvalidInput(f"tool_choice {choice.type!r} needs tools: send the tools the model may call")
    named = {"type": "function", "function": {"name": choice.name}}
    if choice.type == "tool" and not choice.name:
        raise InvalidInput("tool_choice of type 'tool' needs the name of one of the tools")
    value: dict[str, Any] = {
        "tool_choice": {"auto": "auto", "any": "required", "none": "none", "tool": named}[choice.type]
    }
    if choice.disable_parallel_tool_use is not None:
        value["parallel_tool_calls"] = not choice.disable_parallel_tool_use
    return value
