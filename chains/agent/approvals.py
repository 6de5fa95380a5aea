"""Approval before a tool acts: LangChain's HumanInTheLoopMiddleware over every tool, pausing only for
the tools a run names (HFCHAIN_AGENT_REQUIRE_APPROVAL, or config.configurable.require_approval).

Which tools need approval is read from the run's config at each check, so the graph is the same for
every run and a paused run resumes on any replica that builds it; the thread keeps the run's list and
passes it again on resume (the middleware asks again on resume and must get the same answer).
Without a checkpointer (the /agent route) nothing can pause: such calls become an error result instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from langchain.agents.middleware import AgentMiddleware, HumanInTheLoopMiddleware
from langchain_core.messages import ToolMessage
from langgraph.config import get_config

DECISIONS = ["approve", "edit", "reject"]
KEY = "require_approval"  # config.configurable key: the tool names a run pauses for


def required(config: dict | None, defaults: Iterable[str] = ()) -> set[str]:
    """The tools that need approval in a run with this config (the server's list and the run's)."""
    configurable = (config or {}).get("configurable") or {}
    return set(defaults) | set(configurable.get(KEY) or [])


def approval_middleware(tools: Iterable[str], defaults: Iterable[str] = ()) -> HumanInTheLoopMiddleware:
    """The pause for every tool of the agent, taken when the running config names it."""
    defaults = tuple(defaults)

    def gate(name: str) -> Callable[[Any], bool]:
        return lambda request: name in required(_config(), defaults)

    interrupt_on = {
        name: {"allowed_decisions": DECISIONS, "description": f"{name} needs approval", "when": gate(name)}
        for name in tools
    }
    return HumanInTheLoopMiddleware(interrupt_on=interrupt_on, description_prefix="Approve this call")


class NoPause(AgentMiddleware):
    """Where no person can be asked (no checkpointer): a tool that needs approval is not run; its result
    says where to run it instead."""

    def __init__(self, defaults: Iterable[str] = ()) -> None:
        super().__init__()
        self.defaults = tuple(defaults)

    def refused(self, request: Any) -> ToolMessage | None:
        call = request.tool_call
        if call["name"] not in required(_config(), self.defaults):
            return None
        return ToolMessage(
            content=f"error: {call['name']} needs a person's approval, which /agent cannot ask for; run the "
            "agent on a thread (the Agent Protocol routes) or with `hfchain agent`",
            tool_call_id=call["id"],
            name=call["name"],
            status="error",
        )

    def wrap_tool_call(self, request: Any, handler: Callable) -> Any:
        return self.refused(request) or handler(request)

    async def awrap_tool_call(self, request: Any, handler: Callable) -> Any:
        return self.refused(request) or await handler(request)


def _config() -> dict:
    try:
        return get_config()
    except RuntimeError:  # outside a run
        return {}
