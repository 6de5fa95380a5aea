"""Chat messages: accept LangChain-serialised and OpenAI-style dicts, render them for chat templates."""

from __future__ import annotations

from typing import Annotated, Any

from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)
from pydantic import BeforeValidator, Field, ValidationError

ROLES = {SystemMessage: "system", HumanMessage: "user", AIMessage: "assistant", ToolMessage: "tool"}


def coerce_messages(value: Any) -> Any:
    """Turn OpenAI-style ({"role": ...}) and LangChain ({"type": ...}) dicts into messages."""
    if not isinstance(value, list):
        return value
    value = [_with_content(item) for item in value]
    for index, item in enumerate(value):
        try:
            convert_to_messages([item])
        except Exception as error:  # langchain-core says "bad message" with many exception types
            raise ValueError(f"messages[{index}] is not a valid message: {describe(error)}") from None
    messages = convert_to_messages(value)
    for index, message in enumerate(messages):
        if role_of(message) is None:
            kinds = "system, user, assistant or tool"
            raise ValueError(f"{message.type!r} messages are not supported: use {kinds}")
        check_parts(index, message.content)
    return messages


def _with_content(item: Any) -> Any:
    """OpenAI lets an assistant turn that calls tools leave content out or null: read it as ""."""
    if isinstance(item, dict) and item.get("tool_calls") and item.get("content") is None:
        return {**item, "content": ""}
    return item


def check_parts(index: int, content: Any) -> None:
    """Multi-part content may only hold text: the served models read text alone."""
    if isinstance(content, str):
        return
    for number, part in enumerate(content):
        text = isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        if not (isinstance(part, str) or text):
            raise ValueError(
                f"messages[{index}].content[{number}] is not a text part: send "
                '{"type": "text", "text": "..."} (this model reads text only)'
            )


def describe(error: Exception) -> str:
    """A one-line reason from a conversion error (pydantic's list of problems, or the message)."""
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:3])
    if isinstance(error, KeyError):
        return f"it lacks the field {error.args[0]!r}"
    if isinstance(error, AttributeError | TypeError):
        return f"a field has the wrong type ({error})"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


Messages = Annotated[
    list[AnyMessage],
    BeforeValidator(coerce_messages),
    Field(min_length=1, description="The conversation, oldest first; the last is usually the user's"),
]


def role_of(message: BaseMessage) -> str | None:
    """The chat-template role of a message, or None when it has none."""
    return next((role for cls, role in ROLES.items() if isinstance(message, cls)), None)


def text_of(message: BaseMessage) -> str:
    """The message's text, joining text parts of multi-part content."""
    if isinstance(message.content, str):
        return message.content
    parts = (p if isinstance(p, str) else p.get("text", "") for p in message.content)
    return "".join(parts)


def to_chat_dicts(messages: list[BaseMessage], native: bool = False) -> list[dict]:
    """Messages as the role/content dicts a tokenizer's chat template expects. Tool calls and tool
    results are written out as text (chains/tools/calls.py), or, for a template with a tool syntax of
    its own (`native`), given as `tool_calls` and `tool` messages for it to render."""
    from chains.tools.calls import as_native, as_text

    dicts = []
    for message in messages:
        if native and (entry := as_native(message)):
            dicts.append(entry)
            continue
        role, content = as_text(message) or (role_of(message) or "user", text_of(message))
        dicts.append({"role": role, "content": content})
    return dicts


def with_system_prompt(messages: list[BaseMessage], system_prompt: str | None) -> list[BaseMessage]:
    """Prepend the default system prompt when the conversation has none."""
    if not system_prompt or any(isinstance(m, SystemMessage) for m in messages):
        return list(messages)
    return [SystemMessage(content=system_prompt), *messages]
