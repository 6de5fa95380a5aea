"""The agent's limits, as create_agent middleware: steps, the token budget, tool timeouts and errors."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.errors import GraphBubbleUp
from langgraph.prebuilt.tool_node import ToolCallRequest

from chains.budget import Budget
from chains.tools.calls import openai_tools, with_tools


def steps_taken(messages: list[BaseMessage]) -> int:
    """Model calls since the newest human message (this turn's steps so far)."""
    count = 0
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            break
        count += message.type == "ai"
    return count


class StepPolicy(AgentMiddleware):
    """Per model call: the tool choice for this step, and the conversation trimmed to the budget.

    The first step may be made to call a tool (`first="required"`); the last step allowed gets no
    tools, so a run always ends in an answer rather than in a cut-off loop.
    """

    def __init__(self, budget: Budget, max_new_tokens: int, max_steps: int, first: str = "auto") -> None:
        super().__init__()
        self.budget, self.max_new_tokens = budget, max_new_tokens
        self.max_steps, self.first = max_steps, first

    def plan(self, request: ModelRequest) -> ModelRequest:
        """The request for this step."""
        step = steps_taken(request.state["messages"]) + 1
        tools, choice = request.tools, request.tool_choice
        if step >= self.max_steps:
            tools, choice = [], None
        elif step == 1 and self.first == "required" and tools:
            choice = "required"
        return request.override(tools=tools, tool_choice=choice, messages=self.fit(request, tools))

    def fit(self, request: ModelRequest, tools: list) -> list[BaseMessage]:
        """The newest messages that fit with the system prompt and the tool definitions (a system
        message of the client's own stays first)."""
        system = [request.system_message] if request.system_message else []
        whole = with_tools([*system, *request.messages], openai_tools(list(tools)))
        kept, dropped = self.budget.fit_history(whole, self.max_new_tokens)
        if not dropped:
            return request.messages
        messages = request.messages
        own = messages[:1] if messages and isinstance(messages[0], SystemMessage) else []
        survived = {id(m) for m in kept}
        rest = [m for m in messages[len(own) :] if id(m) in survived]
        while rest and isinstance(rest[0], ToolMessage):  # its call was dropped: an orphan result
            rest = rest[1:]
        return [*own, *rest]

    def wrap_model_call(self, request: ModelRequest, handler: Callable) -> ModelResponse:
        planned = self.plan(request)
        return self.ended(planned, handler(planned))

    async def awrap_model_call(self, request: ModelRequest, handler: Callable) -> ModelResponse:
        planned = self.plan(request)
        return self.ended(planned, await handler(planned))

    def ended(self, request: ModelRequest, response: ModelResponse) -> ModelResponse:
        """At the last step, a reply that calls a tool anyway (a remote model may) is made an answer."""
        last = response.result[-1] if response.result else None
        if request.tools or not isinstance(last, AIMessage) or not last.tool_calls:
            return response
        text = last.text or (
            f"(stopped: {self.max_steps} steps ran out before an answer; raise max_steps or ask more simply)"
        )
        answer = last.model_copy(update={"content": text, "tool_calls": [], "invalid_tool_calls": []})
        return ModelResponse(result=[*response.result[:-1], answer], structured_response=None)


class ToolGuard(AgentMiddleware):
    """Every tool call ends in a ToolMessage: a failure or a timeout becomes an error result the model
    reads (never an exception out of the run), and a long result is cut to `max_chars`."""

    def __init__(self, timeout: float, max_chars: int) -> None:
        super().__init__()
        self.timeout, self.max_chars = timeout, max_chars

    def wrap_tool_call(self, request: ToolCallRequest, handler: Callable) -> Any:
        pool = ThreadPoolExecutor(1)  # a sync tool cannot be interrupted: the run stops waiting for it
        try:
            call = contextvars.copy_context().run  # the request's context: its job scope, LangChain's config
            return self.cut(pool.submit(call, handler, request).result(timeout=self.timeout))
        except FutureTimeout:
            return self.failed(request, f"timed out after {self.timeout:g} s")
        except GraphBubbleUp:
            raise
        except Exception as error:
            return self.failed(request, f"{error.__class__.__name__}: {error}")
        finally:
            pool.shutdown(wait=False)

    async def awrap_tool_call(self, request: ToolCallRequest, handler: Callable[..., Awaitable]) -> Any:
        try:
            return self.cut(await asyncio.wait_for(handler(request), self.timeout))
        except TimeoutError:
            return self.failed(request, f"timed out after {self.timeout:g} s")
        except GraphBubbleUp:
            raise
        except Exception as error:
            return self.failed(request, f"{error.__class__.__name__}: {error}")

    def failed(self, request: ToolCallRequest, why: str) -> ToolMessage:
        """The error as the tool's result."""
        call = request.tool_call
        return ToolMessage(
            content=f"error: {call['name']} failed: {why}",
            tool_call_id=call["id"],
            name=call["name"],
            status="error",
        )

    def cut(self, result: Any) -> Any:
        """A ToolMessage whose text is over max_chars, cut and marked."""
        if not isinstance(result, ToolMessage) or not isinstance(result.content, str):
            return result
        if len(result.content) <= self.max_chars:
            return result
        extra = len(result.content) - self.max_chars
        cut = f"{result.content[: self.max_chars]}… [cut: {extra} more characters]"
        return result.model_copy(update={"content": cut})
