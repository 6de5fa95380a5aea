"""hfchain as an MCP server: the MCP Python client and langchain-mcp-adapters over Streamable HTTP (/mcp)
list and call its tools; API keys apply as Bearer tokens; `hfchain mcp` serves the same tools over stdio."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import httpx
import pytest
from langchain_mcp_adapters.client import MultiServerMCPClient
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client

from tests.conftest import ROOT, hfchain_server

pytestmark = pytest.mark.server

TOOLS = {"generate", "summarize", "classify", "run_agent", "search_documents", "ask"}


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    data = tmp_path_factory.mktemp("mcp")
    proc = hfchain_server(HFCHAIN_DATA_DIR=str(data), HFCHAIN_MAX_NEW_TOKENS="24").wait("/ready")
    yield proc.url
    proc.stop()


async def listed_and_called(url: str, headers: dict | None = None) -> tuple[set[str], str, dict]:
    async with (
        streamablehttp_client(f"{url}/mcp", headers=headers) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        names = {tool.name for tool in (await session.list_tools()).tools}
        generated = await session.call_tool(
            "generate", {"prompt": "The capital of France is", "max_new_tokens": 4}
        )
        labels = {"text": "I love this film, it is wonderful.", "labels": ["positive", "negative"]}
        classified = await session.call_tool("classify", labels)
    return names, generated.content[0].text, json.loads(classified.content[0].text)


def test_the_mcp_client_lists_and_calls_the_tools(url):
    names, generated, classified = asyncio.run(listed_and_called(url))
    assert names == TOOLS
    assert "Paris" in generated
    assert classified["label"] in ("positive", "negative")
    assert sum(classified["scores"].values()) == pytest.approx(1.0, abs=1e-3)


def test_a_tool_error_is_an_error_result_that_says_why(url):
    async def call() -> object:
        async with (
            streamablehttp_client(f"{url}/mcp") as (read, write, _),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            return await session.call_tool("ask", {"collection": "nothing-here", "question": "why?"})

    result = asyncio.run(call())
    assert result.isError and "nothing-here" in result.content[0].text


def test_langchain_mcp_adapters_load_hfchains_tools(url):
    async def run() -> tuple[set[str], str]:
        client = MultiServerMCPClient({"hfchain": {"transport": "streamable_http", "url": f"{url}/mcp"}})
        tools = {tool.name: tool for tool in await client.get_tools()}
        answer = await tools["generate"].ainvoke({"prompt": "Two plus two is", "max_new_tokens": 3})
        return set(tools), str(answer)

    names, answer = asyncio.run(run())
    assert names == TOOLS and answer


def test_a_request_that_is_not_mcp_gets_a_clear_error(url):
    answer = httpx.post(
        f"{url}/mcp", json={"hello": 1}, headers={"accept": "application/json, text/event-stream"}
    )
    assert 400 <= answer.status_code < 500


def test_hfchain_mcp_serves_the_tools_over_stdio(tmp_path):
    hfchain = str(Path(sys.executable).parent / "hfchain")

    async def run() -> tuple[set[str], str]:
        params = StdioServerParameters(
            command=hfchain,
            args=["mcp"],
            env={**os.environ, "HFCHAIN_DATA_DIR": str(tmp_path)},
            cwd=ROOT,
        )
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            names = {tool.name for tool in (await session.list_tools()).tools}
            result = await session.call_tool(
                "generate", {"prompt": "The capital of France is", "max_new_tokens": 4}
            )
            return names, result.content[0].text

    names, text = asyncio.run(run())
    assert names == TOOLS and "Paris" in text
