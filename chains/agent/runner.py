"""The /agent runnable: LangChain's create_agent over the backend's chat model, with hfchain's limits and
sessions, and a stream a person can read (each tool call, each result, then the answer's tokens)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, SystemMessage, ToolMessage
from langchain_core.runnables import ConfigurableFieldSpec, Runnable, RunnableConfig
from langchain_core.runnables.config import patch_config
from langchain_core.runnables.utils import get_unique_config_specs

from chains.agent import builtin
from chains.agent.toolbox import Toolbox, build_toolbox
from chains.backends import Backend
from chains.chat import SESSION_SPEC, Conversation, Turn, load_turn, store_turn
from chains.errors import InvalidInput
from chains.messages import role_of, text_of, with_system_prompt
from chains.prompts import load_prompt
from chains.schemas import optional
from chains.sessions import SessionStore

SHOWN_RESULT_CHARS = 500  # of a tool result, in the stream a person reads
AGENT_SPECS = [
    SESSION_SPEC,
    ConfigurableFieldSpec(
        id="max_steps",
        annotation=optional(int),
        name="max_steps",
        description="Most model calls for this request (up to HFCHAIN_AGENT_MAX_STEPS)",
        default=None,
    ),
    ConfigurableFieldSpec(
        id="tool_choice",
        annotation=optional(Literal["auto", "required"]),
        name="tool_choice",
        description="required: the first step must call a tool (auto: the model decides)",
        default=None,
    ),
]
AGENT_KEYS = frozenset(spec.id for spec in AGENT_SPECS)


class AgentInput(Conversation):
    """Input of /agent: a conversation and an optional session, as on /chat."""


@dataclass(frozen=True)
class AgentLimits:
    """How far one request may go (HFCHAIN_AGENT_* settings)."""

    max_steps: int = 6
    tool_choice: str = "auto"
    tool_timeout: float = 30.0
    result_chars: int = 4000
    require_approval: tuple[str, ...] = ()  # tools that wait for a person (approvals.py)

    @classmethod
    def from_settings(cls, settings: Any) -> AgentLimits:
        """The limits the settings give."""
        return cls(
            settings.agent_max_steps,
            settings.agent_tool_choice,
            settings.agent_tool_timeout,
            settings.agent_tool_result_chars,
            tuple(n.strip() for n in (settings.agent_require_approval or "").split(",") if n.strip()),
        )

    def for_request(self, config: dict | None) -> tuple[int, str]:
        """(max_steps, first-step tool choice) for a request's config.configurable; 422 when out of range."""
        configurable = (config or {}).get("configurable") or {}
        steps = configurable.get("max_steps")
        steps = self.max_steps if steps is None else steps
        if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= self.max_steps:
            raise InvalidInput(
                f"config.configurable.max_steps must be a whole number from 1 to {self.max_steps} "
                "(HFCHAIN_AGENT_MAX_STEPS)"
            )
        choice = configurable.get("tool_choice")
        choice = self.tool_choice if choice is None else choice
        if choice not in ("auto", "required"):
            raise InvalidInput("config.configurable.tool_choice must be auto or required")
        return steps, choice


def visible_resent(history: list[BaseMessage], sent: list[BaseMessage]) -> list[BaseMessage]:
    """The new messages of an agent session turn. A client that resends the conversation (the playground)
    sends what it showed: the human messages and each answer as it was streamed, steps included; it is
    recognised by its human messages."""
    visible = [m for m in history if role_of(m) == "user" or (isinstance(m, AIMessage) and not m.tool_calls)]
    same = len(sent) > len(visible) and all(
        role_of(old) == role_of(new) and (role_of(old) != "user" or text_of(old) == text_of(new))
        for old, new in zip(visible, sent, strict=False)
    )
    return sent[len(visible) :] if visible and same else sent


def step_lines(message: BaseMessage) -> str:
    """What the stream shows for a step: the calls an AI message makes, or a tool's result."""
    if isinstance(message, AIMessage) and message.tool_calls:
        calls = (
            f"Calling {c['name']}({json.dumps(c['args'], ensure_ascii=False)})" for c in message.tool_calls
        )
        return "".join(f"{line}\n" for line in calls)
    if isinstance(message, ToolMessage):
        text = text_of(message)
        shown = text if len(text) <= SHOWN_RESULT_CHARS else f"{text[:SHOWN_RESULT_CHARS]}…"
        verb = "failed" if message.status == "error" else "returned"
        return f"{message.name or 'tool'} {verb}: {shown}\n\n"
    return ""


@dataclass
class StepView:
    """Turns the agent graph's stream (modes "messages" and "updates") into chunks a person reads, and
    keeps the messages the run adds."""

    added: list[BaseMessage] = field(default_factory=list)

    def chunks(self, mode: str, data: Any) -> list[AIMessageChunk]:
        """The chunks to send for one item of the graph's stream."""
        if mode == "messages":
            chunk, meta = data
            # a streaming model's tokens, or a whole message from a model that does not stream
            if isinstance(chunk, AIMessage) and chunk.text and meta.get("langgraph_node") == "model":
                return [AIMessageChunk(content=chunk.text)]
            return []
        shown = []
        for update in data.values():
            for message in (update or {}).get("messages", []) if isinstance(update, dict) else []:
                self.added.append(message)
                if line := step_lines(message):
                    shown.append(AIMessageChunk(content=line))
        return shown


class AgentRunnable(Runnable[dict, AIMessage]):
    """{"messages": [...], "session_id"?} -> the agent's final AIMessage; streams show every step.

    Each request builds its agent graph (a few ms) from the knob-configured chat model and its limits.
    """

    name = "agent"

    def __init__(
        self,
        backend: Backend,
        toolbox: Toolbox,
        limits: AgentLimits | None = None,
        sessions: SessionStore | None = None,
        system_prompt: str | None = None,
    ) -> None:
        self.backend, self.toolbox, self.sessions = backend, toolbox, sessions
        self.limits = limits or AgentLimits()
        self.system = load_prompt("agent_system") if system_prompt is None else system_prompt
        self.model = backend.configurable_chat_model()

    @property
    def InputType(self) -> type:
        return AgentInput

    @property
    def OutputType(self) -> type:
        return AIMessage

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        return get_unique_config_specs([*self.model.config_specs, *AGENT_SPECS])

    def start(self, value: Any, config: RunnableConfig) -> tuple[Turn, Runnable, RunnableConfig]:
        """The turn to answer, its agent graph and the graph's config."""
        turn = load_turn(value, self.sessions, config, schema=AgentInput, resent=visible_resent)
        own_system = any(isinstance(m, SystemMessage) for m in turn.messages)
        graph, graph_config = self.graph(config, system=not own_system)
        return turn, graph, graph_config

    def graph(
        self, config: RunnableConfig | None, checkpointer: Any = None, system: bool = True
    ) -> tuple[Runnable, RunnableConfig]:
        """The agent graph for a request's config (knobs, limits) and its run config. With a checkpointer
        a call that needs approval pauses the run; without one it is refused (approvals.py)."""
        # imported at the first agent request, not at the server's start (langchain.agents, langgraph)
        from langchain.agents import create_agent

        from chains.agent.approvals import NoPause, approval_middleware
        from chains.agent.middleware import StepPolicy, ToolGuard

        config = config or {}
        steps, first = self.limits.for_request(config)
        model, _ = self.model.prepare(config)
        policy = StepPolicy(self.backend.budget(), self.backend.max_new_tokens_of(config), steps, first)
        guard = ToolGuard(self.limits.tool_timeout, self.limits.result_chars)
        names, defaults = [t.name for t in self.toolbox.tools], self.limits.require_approval
        approvals = approval_middleware(names, defaults) if checkpointer else NoPause(defaults)
        graph = create_agent(
            model,
            tools=self.toolbox.tools,
            system_prompt=self.system if system else None,
            middleware=[policy, approvals, guard],
            checkpointer=checkpointer,
            name="agent",
        )
        return graph, patch_config(config, recursion_limit=4 * steps + 8)

    def check(self, value: Any, config: dict | None) -> None:
        """Before any output: bad input or limits -> 422, a conversation that cannot fit -> 413."""
        turn = load_turn(value, self.sessions, config, schema=AgentInput, resent=visible_resent)
        self.limits.for_request(config)
        messages = with_system_prompt(turn.messages, self.system)
        self.backend.budget().fit_history(messages, self.backend.max_new_tokens_of(config))

    def answer(self, turn: Turn, added: list[BaseMessage]) -> AIMessage:
        """The run's final AIMessage, with how many steps it took; the turn stored in its session."""
        store_turn(self.sessions, turn, [*turn.new, *added])
        final = next((m for m in reversed(added) if isinstance(m, AIMessage)), AIMessage(content=""))
        info = {"agent_steps": sum(isinstance(m, AIMessage) for m in added)}
        if turn.session_id:
            info["session_id"] = turn.session_id
        return final.model_copy(update={"response_metadata": {**final.response_metadata, **info}})

    def _run(self, value: Any, config: RunnableConfig) -> AIMessage:
        turn, graph, graph_config = self.start(value, config)
        view = StepView()
        for update in graph.stream({"messages": turn.messages}, graph_config, stream_mode="updates"):
            view.chunks("updates", update)
        return self.answer(turn, view.added)

    async def _arun(self, value: Any, config: RunnableConfig) -> AIMessage:
        turn, graph, graph_config = self.start(value, config)
        view = StepView()
        async for update in graph.astream({"messages": turn.messages}, graph_config, stream_mode="updates"):
            view.chunks("updates", update)
        return await asyncio.to_thread(self.answer, turn, view.added)

    def _steps(self, inputs: Iterator[Any], config: RunnableConfig) -> Iterator[AIMessageChunk]:
        turn, graph, graph_config = self.start(next(iter(inputs)), config)
        view = StepView()
        for mode, data in graph.stream({"messages": turn.messages}, graph_config, stream_mode=MODES):
            yield from view.chunks(mode, data)
        yield closing_chunk(self.answer(turn, view.added))

    async def _asteps(
        self, inputs: AsyncIterator[Any], config: RunnableConfig
    ) -> AsyncIterator[AIMessageChunk]:
        turn, graph, graph_config = self.start(await anext(aiter(inputs)), config)
        view = StepView()
        async for mode, data in graph.astream({"messages": turn.messages}, graph_config, stream_mode=MODES):
            for chunk in view.chunks(mode, data):
                yield chunk
        yield closing_chunk(await asyncio.to_thread(self.answer, turn, view.added))

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AIMessage:
        return self._call_with_config(self._run, input, config)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AIMessage:
        return await self._acall_with_config(self._arun, input, config)

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        yield from self._transform_stream_with_config(iter([input]), self._steps, config)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        async for chunk in self._atransform_stream_with_config(_once(input), self._asteps, config):
            yield chunk


MODES = ["messages", "updates"]


def closing_chunk(final: AIMessage) -> AIMessageChunk:
    """The stream's last chunk: no text, the final reply's metadata (steps, session, finish reason)."""
    return AIMessageChunk(content="", response_metadata=final.response_metadata)


async def _once(value: Any) -> AsyncIterator[Any]:
    yield value


def build_agent(
    backend: Backend,
    settings: Any,
    summarize: Runnable,
    classify: Runnable,
    sessions: SessionStore | None = None,
    knowledge: Any = None,
) -> AgentRunnable:
    """The agent over the backend with the tools HFCHAIN_AGENT_TOOLS names (MCP tools: load_mcp_tools);
    `knowledge` (chains.knowledge.Knowledge) gives it search_documents."""
    chain_tools = builtin.chain_tools(
        lambda text: backend.budget().tokens.count_text(text), summarize, classify
    )
    if knowledge is not None:
        chain_tools |= builtin.knowledge_tools(knowledge)
    toolbox = build_toolbox(settings.agent_tools, {**builtin.plain_tools(), **chain_tools})
    return AgentRunnable(backend, toolbox, AgentLimits.from_settings(settings), sessions)
