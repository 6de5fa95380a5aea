"""The Responses API's request, and its translation into the chat chain's input (OpenAI-style messages)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chains.errors import InvalidInput
from server.openai_api import Function

TEXT_PARTS = {"input_text", "output_text", "text"}
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


class FunctionTool(Function):
    """A Responses function tool: Chat Completions' function, flat (name and parameters at the top)."""

    type: Literal["function"]


class NamedFunction(BaseModel):
    type: Literal["function"]
    name: str


class TextFormat(BaseModel):
    """text.format: plain text, any JSON object, or JSON that follows a schema."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class TextOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: TextFormat = Field(default_factory=TextFormat)


class ResponseRequest(BaseModel):
    """The parts of OpenAI's Responses request that hfchain serves; other fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, description="Any name: this server serves one model")
    input: str | list[dict[str, Any]] = Field(description="A user message, or input items")
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = Field(None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | NamedFunction | None = None
    parallel_tool_calls: bool | None = None
    text: TextOptions | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stream: bool = False
    store: bool | None = None
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None

    def new_messages(self) -> list[dict[str, Any]]:
        """The input items as OpenAI-style messages (instructions left out: they do not carry over)."""
        items = [{"role": "user", "content": self.input}] if isinstance(self.input, str) else self.input
        if not items:
            raise InvalidInput("input is empty: send a string or a list of input items")
        messages: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            _add(messages, item, f"input[{index}]")
        return messages

    def chat_input(self, earlier: list[dict[str, Any]]) -> dict[str, Any]:
        """The chat chain's input: instructions, the earlier conversation (previous_response_id's), the new
        messages, tools, tool_choice and response_format."""
        messages = [{"role": "system", "content": self.instructions}] if self.instructions else []
        value: dict[str, Any] = {"messages": [*messages, *earlier, *self.new_messages()]}
        if self.tools:
            value["tools"] = [_function(tool, f"tools[{i}]") for i, tool in enumerate(self.tools)]
        if isinstance(self.tool_choice, NamedFunction):
            value["tool_choice"] = {"type": "function", "function": {"name": self.tool_choice.name}}
        elif self.tool_choice is not None:
            value["tool_choice"] = self.tool_choice
        if self.parallel_tool_calls is not None:
            value["parallel_tool_calls"] = self.parallel_tool_calls
        if format_ := self._response_format():
            value["response_format"] = format_
        return value

    def knobs(self) -> dict[str, Any]:
        """The request's generation knobs, by their hfchain names."""
        knobs = {
            "max_new_tokens": self.max_output_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
        }
        return {k: v for k, v in knobs.items() if v is not None}

    def _response_format(self) -> dict[str, Any] | None:
        format_ = self.text.format if self.text else None
        if format_ is None or format_.type == "text":
            return None
        if format_.type == "json_object":
            return {"type": "json_object"}
        if not format_.schema_:
            raise InvalidInput("text.format of type json_schema needs its schema")
        schema = {"name": format_.name or "output", "schema": format_.schema_, "strict": format_.strict}
        return {"type": "json_schema", "json_schema": {k: v for k, v in schema.items() if v is not None}}


def _add(messages: list[dict[str, Any]], item: Any, where: str) -> None:
    """One input item appended as chat messages; a function_call joins the assistant turn before it."""
    if not isinstance(item, dict):
        raise InvalidInput(f"{where}: an input item is an object (a message, function_call, ...)")
    kind = item.get("type", "message")
    if kind == "message":
        role = ROLES.get(item.get("role"))
        if role is None:
            raise InvalidInput(f"{where}.role: one of user, assistant, system, developer")
        messages.append({"role": role, "content": _text(item.get("content"), f"{where}.content")})
    elif kind == "function_call":
        call_id, name = item.get("call_id"), item.get("name")
        arguments = item.get("arguments", "{}")
        if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(arguments, str):
            raise InvalidInput(f"{where}: a function_call needs call_id, name and arguments (a JSON string)")
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":  # the calls of one assistant turn
            last.setdefault("tool_calls", []).append(call)
            last["content"] = last.get("content") or None
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        if not isinstance(item.get("call_id"), str):
            raise InvalidInput(f"{where}: a function_call_output needs the call_id it answers")
        output = item.get("output", "")
        output = output if isinstance(output, str) else _text(output, f"{where}.output")
        messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": output})
    elif kind in ("reasoning", "item_reference"):
        return  # another model's reasoning, or a reference to a stored item: nothing this model reads
    else:
        raise InvalidInput(
            f"{where}: an item of type {kind!r} is not read here; send messages, function_call and "
            "function_call_output items"
        )


def _text(content: Any, where: str) -> str:
    """A message's content as text: a string, or text parts joined."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidInput(f"{where}: a string or a list of text parts")
    texts = []
    for number, part in enumerate(content):
        if (
            not isinstance(part, dict)
            or part.get("type") not in TEXT_PARTS
            or not isinstance(part.get("text"), str)
        ):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise InvalidInput(f"{where}[{number}]: a {kind!r} part is not read here; send input_text parts")
        texts.append(part["text"])
    return "".join(texts)


def _function(tool: dict[str, Any], where: str) -> dict[str, Any]:
    """A Responses function tool in the chat chain's form (the function nested, as in Chat Completions)."""
    if tool.get("type") != "function":
        raise InvalidInput(f"{where}: only function tools are served here, not {tool.get('type')!r}")
    function = FunctionTool.model_validate(tool).model_dump(exclude_none=True, exclude={"type"})
    return {"type": "function", "function": function}
