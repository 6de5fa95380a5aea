"""The agent's tools, as settings name them: built-ins by name, Python tools by `module:attribute`, and
the tools of MCP servers (stdio commands or streamable-HTTP URLs, through langchain-mcp-adapters)."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool, tool

from chains.errors import HfchainError

log = logging.getLogger(__name__)

TRANSPORTS = {"stdio": ("command",), "streamable_http": ("url",), "sse": ("url",)}


class ToolSetupError(HfchainError):
    """Tool settings that cannot be used (an unknown built-in, an import that fails, a bad MCP entry)."""

    status_code = 500


@dataclass
class Toolbox:
    """The tools the agent may call, and the MCP servers that could not be reached (name -> why)."""

    tools: list[BaseTool] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict:
        """What GET /agent/tools shows."""
        return {
            "tools": [{"name": t.name, "description": t.description} for t in self.tools],
            "failed_servers": self.failed,
        }


def build_toolbox(spec: str, builtins: dict[str, BaseTool]) -> Toolbox:
    """The tools HFCHAIN_AGENT_TOOLS names: built-ins by name, Python tools as module:attribute."""
    tools: list[BaseTool] = []
    for entry in (part.strip() for part in spec.split(",")):
        if ":" in entry:
            tools += python_tools(entry)
        elif entry in builtins:
            tools.append(builtins[entry])
        elif entry:
            raise ToolSetupError(
                f"HFCHAIN_AGENT_TOOLS: {entry!r} is neither a built-in tool ({', '.join(builtins)}) "
                "nor a module:attribute reference"
            )
    check_names(tools)
    return Toolbox(tools)


async def load_mcp_tools(toolbox: Toolbox, spec: str | None, timeout: float = 30.0) -> None:
    """Add the tools of the MCP servers HFCHAIN_AGENT_MCP_SERVERS names (a failing server is logged)."""
    connections = mcp_connections(spec)
    for name, connection in connections.items():
        try:
            found = await asyncio.wait_for(server_tools(name, connection), timeout)
        except Exception as error:  # any transport or protocol failure: the rest still load
            why = (
                "no answer in time"
                if isinstance(error, TimeoutError)
                else f"{error.__class__.__name__}: {error}"
            )
            toolbox.failed[name] = why
            log.warning("MCP server %r gave no tools (%s): the agent runs without them", name, why)
            continue
        log.info("MCP server %r: %d tools (%s)", name, len(found), ", ".join(t.name for t in found))
        toolbox.tools = [*toolbox.tools, *found]
        check_names(toolbox.tools)


def python_tools(reference: str) -> list[BaseTool]:
    """The LangChain tool(s) at `module:attribute`: a tool, a function (made a tool), or a list of them."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ToolSetupError(f"HFCHAIN_AGENT_TOOLS entry {reference!r}: write module:attribute")
    try:
        value = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ToolSetupError(
            f"HFCHAIN_AGENT_TOOLS entry {reference!r} cannot be loaded ({error}): check the module is "
            "importable from the server's working directory or PYTHONPATH"
        ) from None
    items = value if isinstance(value, list | tuple) else [value]
    tools = []
    for item in items:
        if isinstance(item, BaseTool):
            tools.append(item)
        elif callable(item) and item.__doc__:
            tools.append(tool(item))
        else:
            raise ToolSetupError(
                f"HFCHAIN_AGENT_TOOLS entry {reference!r} holds {item!r}: give a LangChain tool, a "
                "documented function, or a list of them"
            )
    return tools


def mcp_connections(spec: str | None) -> dict[str, dict]:
    """HFCHAIN_AGENT_MCP_SERVERS (JSON: name -> {"transport", "command"/"args" or "url", ...}), checked."""
    if not spec:
        return {}
    try:
        servers = json.loads(spec)
    except ValueError as error:
        raise ToolSetupError(f"HFCHAIN_AGENT_MCP_SERVERS is not JSON: {error}") from None
    if not isinstance(servers, dict):
        raise ToolSetupError("HFCHAIN_AGENT_MCP_SERVERS must be a JSON object: server name -> connection")
    for name, connection in servers.items():
        kind = connection.get("transport") if isinstance(connection, dict) else None
        if kind not in TRANSPORTS or any(not connection.get(key) for key in TRANSPORTS[kind]):
            raise ToolSetupError(
                f"HFCHAIN_AGENT_MCP_SERVERS[{name!r}]: give "
                '{"transport": "stdio", "command": ..., "args": [...]} or '
                '{"transport": "streamable_http", "url": ...}'
            )
    return {name: _with_defaults(connection) for name, connection in servers.items()}


def _with_defaults(connection: dict) -> dict:
    """A stdio entry without "args" runs its command with none."""
    return {"args": [], **connection} if connection["transport"] == "stdio" else connection


async def server_tools(name: str, connection: dict) -> list[BaseTool]:
    """One MCP server's tools (a session per call, as langchain-mcp-adapters opens them)."""
    from langchain_mcp_adapters.client import MultiServerMCPClient

    client = MultiServerMCPClient({name: connection})
    return [with_sync_call(t) for t in await client.get_tools(server_name=name)]


def with_sync_call(item: BaseTool) -> BaseTool:
    """An async-only tool (as MCP's are) made callable from sync code too, on a loop of its own."""
    if not isinstance(item, StructuredTool) or item.func is not None or item.coroutine is None:
        return item
    coroutine = item.coroutine

    def call(**kwargs: Any) -> Any:
        with ThreadPoolExecutor(1) as pool:  # a fresh thread: the caller may be inside a running loop
            return pool.submit(asyncio.run, coroutine(**kwargs)).result()

    return item.model_copy(update={"func": call})


def check_names(tools: list[BaseTool]) -> None:
    """Two tools with one name would be ambiguous to the model."""
    names = [t.name for t in tools]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ToolSetupError(f"tool names must be distinct; given more than once: {twice}")
