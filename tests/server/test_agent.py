"""/agent on a real server: RemoteRunnable invoke, batch, stream and stream_events, an MCP server (stdio)
started by the server whose tool the agent calls, sessions, limits, and a CLI run in a terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from langchain_core.messages import AIMessage
from langserve import RemoteRunnable

from tests.conftest import ROOT, hfchain_server

MCP_SERVER = str(ROOT / "tests" / "fixtures" / "mcp_server.py")
MARK = "(reversed by the MCP server)"
QUESTION = {"messages": [{"role": "user", "content": "Reverse the text 'hello agent'."}]}
SURE_CALL = {"configurable": {"tool_choice": "required", "max_steps": 2, "max_new_tokens": 48}}


@pytest.fixture(scope="module")
def agent_server():
    """A server whose agent has one tool, from an MCP server it starts (stdio), next to one that fails."""
    servers = {
        "demo": {"transport": "stdio", "command": sys.executable, "args": [MCP_SERVER]},
        "broken": {"transport": "stdio", "command": "/nonexistent/mcp-server"},
    }
    proc = hfchain_server(
        HFCHAIN_AGENT_TOOLS="", HFCHAIN_AGENT_MCP_SERVERS=json.dumps(servers), HFCHAIN_MAX_NEW_TOKENS="48"
    ).wait("/ready")
    yield proc
    proc.stop()


def test_tools_list_the_mcp_tool_and_the_server_that_failed(agent_server):
    listed = httpx.get(f"{agent_server.url}/agent/tools").json()
    assert [t["name"] for t in listed["tools"]] == ["reverse_text"]
    assert list(listed["failed_servers"]) == ["broken"]
    assert "No such file" in listed["failed_servers"]["broken"]


def test_invoke_calls_the_mcp_tool_and_the_session_keeps_every_step(agent_server):
    session = f"agent-{uuid.uuid4().hex[:8]}"
    agent = RemoteRunnable(f"{agent_server.url}/agent")
    config = {"configurable": {**SURE_CALL["configurable"], "session_id": session}}
    reply = agent.invoke(QUESTION, config)
    assert isinstance(reply, AIMessage) and not reply.tool_calls
    assert reply.response_metadata["agent_steps"] == 2 and reply.response_metadata["session_id"] == session
    stored = httpx.get(f"{agent_server.url}/sessions/{session}").json()["messages"]
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"]
    call = stored[1]["tool_calls"][0]
    assert call["name"] == "reverse_text" and isinstance(call["args"]["text"], str)
    assert stored[2]["content"] == f"{call['args']['text'][::-1]} {MARK}"  # computed by the MCP server
    assert stored[2]["tool_call_id"] == call["id"]
    assert stored[3]["content"] == reply.content


def test_stream_shows_the_call_the_result_and_the_answer(agent_server):
    chunks = list(RemoteRunnable(f"{agent_server.url}/agent").stream(QUESTION, SURE_CALL))
    text = "".join(c.content for c in chunks)
    first, result, *_ = text.split("\n")
    assert first.startswith("Calling reverse_text({") and first.endswith("})")
    assert result.startswith("reverse_text returned: ") and result.endswith(MARK)
    assert len(chunks) >= 4 and chunks[-1].response_metadata["agent_steps"] == 2


def test_stream_events_show_the_tool_run(agent_server):
    async def events():
        agent = RemoteRunnable(f"{agent_server.url}/agent")
        return [e async for e in agent.astream_events(QUESTION, SURE_CALL, version="v2")]

    import asyncio

    seen = asyncio.run(events())
    ends = [e for e in seen if e["event"] == "on_tool_end"]
    assert [e["name"] for e in ends] == ["reverse_text"]
    assert MARK in json.dumps(ends[0]["data"]["output"], default=str)


def test_batch_answers_each_question(agent_server):
    questions = [QUESTION, {"messages": [{"role": "user", "content": "Reverse 'abc'."}]}]
    replies = RemoteRunnable(f"{agent_server.url}/agent").batch(questions, SURE_CALL)
    assert len(replies) == 2 and all(r.response_metadata["agent_steps"] == 2 for r in replies)


@pytest.mark.parametrize("path", ["invoke", "stream"])
@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"input": QUESTION, "config": {"configurable": {"max_steps": 0}}}, "max_steps"),
        ({"input": QUESTION, "config": {"configurable": {"tool_choice": "always"}}}, "tool_choice"),
        ({"input": {**QUESTION, "tools": []}}, "tools"),
        ({"input": {"messages": [{"role": "user", "content": "word " * 40000}]}}, "tokens"),
    ],
)
def test_bad_requests_get_a_4xx_that_says_what_to_fix(agent_server, path, body, says):
    response = httpx.post(f"{agent_server.url}/agent/{path}", json=body, timeout=60)
    assert response.status_code in (413, 422), response.text
    assert says in response.text


def test_cli_agent_streams_the_steps_in_a_terminal(tmp_path):
    servers = {"demo": {"transport": "stdio", "command": sys.executable, "args": [MCP_SERVER]}}
    env = {"HFCHAIN_AGENT_TOOLS": "", "HFCHAIN_AGENT_MCP_SERVERS": json.dumps(servers), "NO_COLOR": "1"}
    hfchain = str(Path(sys.executable).parent / "hfchain")
    args = [
        "agent",
        "Reverse 'hello'.",
        "--tool-choice",
        "required",
        "--max-steps",
        "2",
        "--max-new-tokens",
        "32",
    ]
    run = subprocess.run(
        [hfchain, *args], capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, **env}
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[0].startswith("→ reverse_text({") and lines[1].startswith("← reverse_text: ")
    assert lines[1].endswith(MARK) and "[2 steps]" in run.stderr
