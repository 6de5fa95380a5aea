"""Chat chain: {"messages": [...], "session_id"?} -> AIMessage, history trimmed to the budget.

With a session id, the stored history comes first and the completed turn is stored after the reply
(the history is loaded and saved explicitly: RunnableWithMessageHistory is deprecated in langchain-core 1.x).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langchain_core.runnables import (
    ConfigurableFieldSpec,
    Runnable,
    RunnableConfig,
    RunnableGenerator,
    RunnableLambda,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import SkipJsonSchema

from chains.backends import Backend
from chains.configurable import DeclaredLambda
from chains.errors import InvalidInput
from chains.messages import Messages, role_of, text_of, to_chat_dicts, with_system_prompt
from chains.prompts import load_prompt
from chains.schemas import optional
from chains.sessions import SESSION_ID_HELP, SESSION_ID_PATTERN, SessionStore
from chains.tenants import audit, caller_of, require, tenant_of
from chains.tools.plan import plan_call

SESSION_HELP = "Keep the conversation server-side under this id: send only the new messages"
# LangServe's playground draws a list of messages with this widget as a chat
CHAT_WIDGET = {"extra": {"widget": {"type": "chat", "input": "messages"}}}
SESSION_SPEC = ConfigurableFieldSpec(
    id="session_id", annotation=optional(str), name="session_id", description=SESSION_HELP, default=None
)


class Conversation(BaseModel):
    """Input of /chat and /agent: LangChain-serialised or OpenAI-style messages, and an optional session.

    The session id may also come as config.configurable.session_id (LangServe's convention, what the
    playground sends); the input field stays accepted but is left out of the schema, so that the
    playground sees a chat input (a dict with one list of messages).
    """

    model_config = ConfigDict(extra="forbid")

    messages: Messages = Field(json_schema_extra=CHAT_WIDGET)
    session_id: SkipJsonSchema[str | None] = Field(None, pattern=SESSION_ID_PATTERN, description=SESSION_HELP)

    def call_options(self) -> dict:
        """Keyword arguments for the chat model besides the messages (none here)."""
        return {}


class ChatInput(Conversation):
    """Input of /chat: a conversation, plus what the reply may be besides text."""

    # what the model may reply with besides text (OpenAI's fields; chains/tools/plan.py); left out of the
    # schema so that the playground still sees a chat input
    tools: SkipJsonSchema[list[dict] | None] = None
    tool_choice: SkipJsonSchema[str | dict | None] = None
    parallel_tool_calls: SkipJsonSchema[bool | None] = None
    response_format: SkipJsonSchema[dict | None] = None

    def call_options(self) -> dict:
        """The tool and response-format options set, as keyword arguments for the chat model."""
        names = ("tools", "tool_choice", "parallel_tool_calls", "response_format")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


def system_prompt_or_default(system_prompt: str | None) -> str:
    """The configured system prompt, else the one in prompts/chat_system.txt."""
    return load_prompt("chat_system") if system_prompt is None else system_prompt


@dataclass
class Turn:
    """One request's conversation: the full message list and what to store after the reply."""

    messages: list[BaseMessage]
    new: list[BaseMessage]
    session_id: str | None = None
    options: dict = field(default_factory=dict)  # tools / response_format for the model call
    config: dict | None = None  # the run's config: whose session it is
    fresh: bool = False  # the session had no stored turn


def store_turn(sessions: SessionStore | None, turn: Turn, messages: list[BaseMessage]) -> None:
    """Store a completed turn in the caller's tenant; a session's first turn is logged as its creation."""
    if sessions is None or not turn.session_id:
        return
    tenant = tenant_of(turn.config)
    sessions.append(turn.session_id, messages, tenant)
    if turn.fresh:
        audit("session.created", caller_of(turn.config), tenant, session_id=turn.session_id)


def session_of(chat: Conversation, config: dict | None) -> str | None:
    """The session id from the input or from config.configurable.session_id (422 if they disagree)."""
    configured = ((config or {}).get("configurable") or {}).get("session_id") or None
    valid = isinstance(configured, str) and re.match(SESSION_ID_PATTERN, configured)
    if configured is not None and not valid:
        raise InvalidInput(f"config.configurable.session_id: {SESSION_ID_HELP}")
    if chat.session_id and configured and chat.session_id != configured:
        raise InvalidInput("session_id is given twice with different values: send it in one place")
    return chat.session_id or configured


def unsent(history: list[BaseMessage], sent: list[BaseMessage]) -> list[BaseMessage]:
    """The sent messages that are new: a client that resends the stored history (the playground, most
    OpenAI clients) gets it dropped, so that the session does not hold it twice."""
    same = len(sent) > len(history) and all(
        role_of(old) == role_of(new) and text_of(old) == text_of(new)
        for old, new in zip(history, sent, strict=False)
    )
    return sent[len(history) :] if history and same else sent


def load_turn(
    value: object,
    sessions: SessionStore | None,
    config: dict | None = None,
    schema: type[Conversation] = ChatInput,
    resent: Callable[[list[BaseMessage], list[BaseMessage]], list[BaseMessage]] = unsent,
) -> Turn:
    """The conversation to answer: the session's stored history (if any), then the request's messages.

    System messages of the request go first and are not stored: they apply to this turn only.
    `resent` picks the new messages out of what was sent, given the stored history.
    """
    chat = schema.model_validate(value)
    options = chat.call_options()
    plan_call(**options)  # bad tools, tool_choice or response_format: 422 before any work
    session_id = session_of(chat, config)
    if session_id is None:
        return Turn(messages=chat.messages, new=[], options=options)
    if sessions is None:
        raise InvalidInput("sessions are not enabled here: drop session_id and send the whole conversation")
    require(config, "user", "a stored session (session_id)")
    system = [m for m in chat.messages if isinstance(m, SystemMessage)]
    history = sessions.history(session_id, tenant_of(config))
    new = resent(history, [m for m in chat.messages if not isinstance(m, SystemMessage)])
    messages = [*system, *history, *new]
    return Turn(messages, new, session_id, options, config=config, fresh=not history)


def fit_conversation(
    backend: Backend,
    value: object,
    system: str | None,
    config: dict | None,
    sessions: SessionStore | None = None,
) -> tuple[Turn, list[BaseMessage], dict]:
    """The turn, the messages to send (system prompt added, oldest dropped to fit) and what was done."""
    turn = load_turn(value, sessions, config)
    budget = backend.budget()
    messages = with_system_prompt(turn.messages, system)
    kept, dropped = budget.fit_history(messages, backend.max_new_tokens_of(config))
    info = {"dropped_messages": dropped, "token_counting": budget.counting}
    if turn.session_id:
        info["session_id"] = turn.session_id
    return turn, kept, info


def preflight(
    backend: Backend,
    value: object,
    config: dict | None,
    system: str | None = None,
    sessions: SessionStore | None = None,
) -> None:
    """The budget check for a raw request input (413 if the newest message cannot fit)."""
    try:
        ChatInput.model_validate(value)
    except ValidationError:
        return  # schema validation reports it
    fit_conversation(backend, value, system, config, sessions)


def prompt_ids(
    backend: Backend,
    value: object,
    config: dict | None,
    system: str | None = None,
    sessions: SessionStore | None = None,
) -> list[int] | None:
    """The token ids the model reads for a chat input (system prompt, history, tools, as the chat chain
    renders them; not cut to the budget); None when the backend has no exact tokenizer."""
    turn = load_turn(value, sessions, config)
    messages = with_system_prompt(turn.messages, system)
    render = getattr(backend.chat_model, "prompt_ids", None)
    if render is not None:
        return render(messages, **turn.options)
    tokens = backend.budget().tokens
    return tokens.chat_ids(to_chat_dicts(messages)) if tokens.method == "tokenizer" else None


def prompt_tokens(
    backend: Backend,
    value: object,
    config: dict | None,
    system: str | None = None,
    sessions: SessionStore | None = None,
) -> int:
    """How many tokens the model reads for a chat input: exact with the served tokenizer, else the
    budget's conservative estimate."""
    ids = prompt_ids(backend, value, config, system, sessions)
    if ids is not None:
        return len(ids)
    messages = with_system_prompt(load_turn(value, sessions, config).messages, system)
    return backend.budget().count_messages(messages)


def remember(sessions: SessionStore | None, turn: Turn) -> Runnable:
    """Passes the reply through; once it is complete, stores the turn (a stream cut short stores nothing)."""

    def store(chunks: list[AIMessage]) -> None:
        if sessions is not None and turn.session_id and chunks:
            calls = [call for chunk in chunks for call in getattr(chunk, "tool_calls", None) or []]
            reply = AIMessage(content="".join(text_of(c) for c in chunks), tool_calls=calls)
            store_turn(sessions, turn, [*turn.new, reply])

    def transform(chunks: Iterator[AIMessage]) -> Iterator[AIMessage]:
        seen = []
        for chunk in chunks:
            seen.append(chunk)
            yield chunk
        store(seen)

    async def atransform(chunks: AsyncIterator[AIMessage]) -> AsyncIterator[AIMessage]:
        seen = []
        async for chunk in chunks:
            seen.append(chunk)
            yield chunk
        await asyncio.to_thread(store, seen)

    return RunnableGenerator(transform, atransform, name="remember")


def with_metadata(info: dict) -> Runnable:
    """Adds `info` to the reply's response_metadata (the first chunk, when streaming)."""

    def add(message: AIMessage) -> AIMessage:
        message.response_metadata = {**message.response_metadata, **info}
        return message

    def transform(chunks: Iterator[AIMessage]) -> Iterator[AIMessage]:
        for i, chunk in enumerate(chunks):
            yield add(chunk) if i == 0 else chunk

    async def atransform(chunks: AsyncIterator[AIMessage]) -> AsyncIterator[AIMessage]:
        first = True
        async for chunk in chunks:
            yield add(chunk) if first else chunk
            first = False

    return RunnableGenerator(transform, atransform, name="metadata")


def build_chat_chain(
    backend: Backend, system_prompt: str | None = None, sessions: SessionStore | None = None
) -> Runnable:
    """messages (+ session history) -> fit to budget -> chat model -> AIMessage -> store the turn.

    The reply's response_metadata says dropped_messages and token_counting; knobs are configurable.
    """
    system = system_prompt_or_default(system_prompt)
    model = backend.configurable_chat_model()

    def respond(value: dict | ChatInput, config: RunnableConfig) -> Runnable:
        turn, kept, info = fit_conversation(backend, value, system, config, sessions)
        messages = RunnableLambda(lambda _: kept, name="messages")
        bound = model.bind(**turn.options) if turn.options else model
        return messages | bound | with_metadata(info) | remember(sessions, turn)

    chain = DeclaredLambda(respond, [SESSION_SPEC], name="chat")
    return chain.with_types(input_type=ChatInput, output_type=AIMessage)
