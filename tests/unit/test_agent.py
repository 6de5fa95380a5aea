"""The agent with a scripted chat model: built-in tools, tool settings, step limits, tool failures and
timeouts, the step stream, sessions."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import ToolException, tool

from chains.agent import builtin
from chains.agent.middleware import StepPolicy, ToolGuard, steps_taken
from chains.agent.runner import AgentLimits, AgentRunnable, step_lines, visible_resent
from chains.agent.toolbox import Toolbox, ToolSetupError, build_toolbox, mcp_connections, python_tools
from chains.budget import Budget
from chains.errors import InputTooLong, InvalidInput
from chains.sessions import SessionStore
from chains.tokens import EstimatedTokens
from tests.unit.fakes import scripted_backend


def call(name: str, args: dict, n: int = 1) -> AIMessage:
    return AIMessage(
        content="", tool_calls=[{"name": name, "args": args, "id": f"call_{n}", "type": "tool_call"}]
    )


QUESTION = {"messages": [{"role": "user", "content": "What is 17 * 23?"}]}


def agent_over(script, tools=None, log=None, limits=None, sessions=None) -> AgentRunnable:
    toolbox = Toolbox(tools if tools is not None else list(builtin.plain_tools().values()))
    return AgentRunnable(scripted_backend(script, log), toolbox, limits or AgentLimits(), sessions)


# --- built-in tools ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [("17 * 23", "391"), ("(2 + 3) ** 2 / 5", "5.0"), ("sqrt(16) + pi * 0", "4.0"), ("factorial(5)", "120")],
)
def test_calculator_computes(expression, value):
    assert builtin.calculate(expression) == value


@pytest.mark.parametrize(
    "expression",
    ["__import__('os').system('true')", "open('/etc/passwd')", "(1).__class__", "9 ** 9 ** 9", "1 / 0",
     "'a' * 10", "x + 1", "factorial(100000)", "1" * 600],
)  # fmt: skip
def test_calculator_refuses_what_is_not_arithmetic(expression):
    with pytest.raises(ToolException):
        builtin.calculate(expression)


def test_current_time_takes_a_zone_and_names_a_bad_one():
    assert builtin.current_time("Europe/Paris")[-6:] in {"+01:00", "+02:00"}
    assert builtin.current_time().endswith("+00:00")
    with pytest.raises(ToolException, match="IANA"):
        builtin.current_time("Mars/Olympus")


def test_chain_tools_call_the_chains_sync_and_async():
    summarize = RunnableLambda(lambda v: {"summary": v["text"][:5], "chunks": 1})
    scores = {"a": 0.9, "b": 0.1}
    classify = RunnableLambda(lambda v: {"label": v["labels"][0], "scores": scores, "chunks": 1})
    tools = builtin.chain_tools(lambda text: len(text), summarize, classify)
    assert tools["count_tokens"].invoke({"text": "abc"}) == 3
    assert tools["summarize"].invoke({"text": "long text"}) == "long "
    expected = {"label": "a", "scores": {"a": 0.9, "b": 0.1}}
    assert tools["classify"].invoke({"text": "t", "labels": ["a", "b"]}) == expected
    assert asyncio.run(tools["classify"].ainvoke({"text": "t", "labels": ["a", "b"]})) == expected
    assert asyncio.run(tools["summarize"].ainvoke({"text": "long text"})) == "long "


# --- tool settings -----------------------------------------------------------------------------------


@tool
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


def whisper(text: str) -> str:
    """Lower-case a text."""
    return text.lower()


TOOLSET = [shout, whisper]


def test_toolbox_takes_builtins_and_python_references():
    spec = "calculator, tests.unit.test_agent:shout,tests.unit.test_agent:whisper"
    box = build_toolbox(spec, builtin.plain_tools())
    assert [t.name for t in box.tools] == ["calculator", "shout", "whisper"]
    assert [t.name for t in python_tools("tests.unit.test_agent:TOOLSET")] == ["shout", "whisper"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("calculater", "neither a built-in"),
        ("no_such_module:thing", "cannot be loaded"),
        ("tests.unit.test_agent:missing", "cannot be loaded"),
        ("tests.unit.test_agent:QUESTION", "give a LangChain tool"),
        ("tests.unit.test_agent:shout,tests.unit.test_agent:shout", "distinct"),
    ],
)
def test_bad_tool_settings_name_the_fix(spec, message):
    with pytest.raises(ToolSetupError, match=message):
        build_toolbox(spec, builtin.plain_tools())


def test_mcp_server_settings_are_checked():
    assert mcp_connections(None) == {}
    good = '{"fs": {"transport": "stdio", "command": "python", "args": ["x.py"]}, "web": ' \
        '{"transport": "streamable_http", "url": "http://127.0.0.1:9/mcp"}}'  # fmt: skip
    assert set(mcp_connections(good)) == {"fs", "web"}
    for bad in ["[1]", "{", '{"fs": {"transport": "stdio"}}', '{"fs": {"transport": "carrier-pigeon"}}']:
        with pytest.raises(ToolSetupError, match="HFCHAIN_AGENT_MCP_SERVERS"):
            mcp_connections(bad)


# --- the step policy ---------------------------------------------------------------------------------


def test_steps_count_from_the_newest_human_message():
    messages = [
        HumanMessage("a"),
        AIMessage("b"),
        HumanMessage("c"),
        call("x", {}),
        ToolMessage("r", tool_call_id="call_1"),
    ]
    assert steps_taken(messages) == 1  # fmt: skip


def test_first_step_may_be_forced_and_the_last_one_gets_no_tools():
    log: list = []
    script = [call("calculator", {"expression": "17 * 23"}, 1), call("calculator", {"expression": "1+1"}, 2),
              AIMessage("391")]  # fmt: skip
    agent = agent_over(script, log=log, limits=AgentLimits(max_steps=2, tool_choice="required"))
    reply = agent.invoke(QUESTION)
    assert [entry.get("tool_choice") for entry in log] == ["required", None]
    assert "tools" in log[0] and "tools" not in log[1]  # the last step may only answer
    assert reply.response_metadata["agent_steps"] == 2
    assert "2 steps ran out" in reply.content and not reply.tool_calls  # it called again: no tool ran


def test_conversation_is_trimmed_to_the_budget_without_orphan_results():
    budget = Budget(EstimatedTokens(), context_window=400)
    policy = StepPolicy(budget, max_new_tokens=64, max_steps=6)
    thinking = call("calculator", {"expression": "1"}).model_copy(update={"content": "z " * 300})
    result = ToolMessage("y " * 150, tool_call_id="call_1")
    newest = [HumanMessage("What is 2 + 2?")]
    request = SimpleNamespace(system_message=SystemMessage("be brief"), messages=[thinking, result, *newest])
    assert policy.fit(request, []) == newest  # the result fits, its call does not: both go
    own = SystemMessage("answer in French")
    request = SimpleNamespace(system_message=None, messages=[own, thinking, result, *newest])
    assert policy.fit(request, []) == [own, *newest]  # the client's system message stays


# --- tool failures -----------------------------------------------------------------------------------


@tool
def broken(text: str) -> str:
    """Always fails."""
    raise RuntimeError("disk on fire")


@tool
def slow(text: str) -> str:
    """Takes too long."""
    time.sleep(3)
    return "late"


@tool
async def slow_async(text: str) -> str:
    """Takes too long, asynchronously."""
    await asyncio.sleep(3)
    return "late"


@pytest.mark.parametrize(
    ("tool_", "why"), [(broken, "RuntimeError: disk on fire"), (slow, "timed out"), (slow_async, "timed out")]
)
def test_a_failing_tool_becomes_an_error_result_the_model_reads(tool_, why):
    log: list = []
    agent = agent_over([call(tool_.name, {"text": "a"}), AIMessage("sorry")], tools=[tool_], log=log,
                       limits=AgentLimits(tool_timeout=0.5))  # fmt: skip
    reply = asyncio.run(agent.ainvoke(QUESTION)) if tool_ is slow_async else agent.invoke(QUESTION)
    assert reply.content == "sorry"
    result = log[1]["messages"][-1]
    assert isinstance(result, ToolMessage) and result.status == "error" and why in result.text


def test_long_results_are_cut_for_the_model():
    guard = ToolGuard(timeout=1, max_chars=100)
    cut = guard.cut(ToolMessage("z" * 250, tool_call_id="1"))
    assert cut.text.startswith("z" * 100) and cut.text.endswith("[cut: 150 more characters]")


# --- the run and its stream --------------------------------------------------------------------------

SCRIPT = [call("calculator", {"expression": "17 * 23"}), AIMessage("17 * 23 is 391.")]


def test_invoke_runs_the_tool_and_returns_the_answer():
    log: list = []
    reply = agent_over(SCRIPT, log=log).invoke(QUESTION)
    assert reply.content == "17 * 23 is 391." and reply.response_metadata["agent_steps"] == 2
    result = log[1]["messages"][-1]
    assert isinstance(result, ToolMessage) and result.text == "391" and result.status == "success"


def test_stream_shows_the_call_the_result_and_the_answer():
    chunks = list(agent_over(SCRIPT).stream(QUESTION))
    text = "".join(c.text for c in chunks)
    assert (
        text == 'Calling calculator({"expression": "17 * 23"})\ncalculator returned: 391\n\n17 * 23 is 391.'
    )
    assert chunks[-1].response_metadata["agent_steps"] == 2


def test_async_stream_matches_the_sync_one():
    async def collect():
        return "".join([c.text async for c in agent_over(SCRIPT).astream(QUESTION)])

    assert asyncio.run(collect()) == "".join(c.text for c in agent_over(SCRIPT).stream(QUESTION))


def test_stream_events_show_the_tool_run():
    async def events():
        return [e async for e in agent_over(SCRIPT).astream_events(QUESTION, version="v2")]

    seen = asyncio.run(events())
    ends = [e for e in seen if e["event"] == "on_tool_end"]
    assert [e["name"] for e in ends] == ["calculator"] and ends[0]["data"]["output"].content == "391"


def test_step_lines_for_errors_and_long_results():
    failed = ToolMessage("error: x failed: boom", tool_call_id="1", name="x", status="error")
    assert step_lines(failed) == "x failed: error: x failed: boom\n\n"
    assert step_lines(ToolMessage("a" * 900, tool_call_id="1", name="x")).endswith("…\n\n")
    assert step_lines(AIMessage("plain answer")) == ""


def test_bad_limits_and_input_are_422_and_a_huge_message_is_413():
    agent = agent_over(SCRIPT)
    for config in ({"configurable": {"max_steps": 99}}, {"configurable": {"max_steps": "3"}},
                   {"configurable": {"tool_choice": "always"}}):  # fmt: skip
        with pytest.raises(InvalidInput, match=r"config\.configurable"):
            agent.check(QUESTION, config)
    with pytest.raises(ValueError, match="tools"):
        agent.check({**QUESTION, "tools": []}, None)  # /agent has its own tools
    with pytest.raises(InputTooLong):
        agent.check({"messages": [{"role": "user", "content": "word " * 20000}]}, None)


# --- sessions ----------------------------------------------------------------------------------------


def test_a_session_keeps_the_steps_and_recognises_a_resent_conversation(tmp_path):
    sessions = SessionStore(f"sqlite:///{tmp_path / 's.db'}")
    agent = agent_over(SCRIPT, sessions=sessions)
    first = agent.invoke({**QUESTION, "session_id": "s1"})
    stored = sessions.history("s1")
    assert [m.type for m in stored] == ["human", "ai", "tool", "ai"]
    shown = AIMessage(
        "".join(c.text for c in agent_over(SCRIPT).stream(QUESTION))
    )  # what the playground shows
    resent = [HumanMessage("What is 17 * 23?"), shown, HumanMessage("And 2 + 2?")]
    assert visible_resent(stored, resent) == resent[2:]
    agent.invoke({"messages": [{"role": "user", "content": "What is 17 * 23?"},
                               {"role": "assistant", "content": shown.text},
                               {"role": "user", "content": "And 2 + 2?"}], "session_id": "s1"})  # fmt: skip
    assert [m.type for m in sessions.history("s1")] == ["human", "ai", "tool", "ai"] * 2
    assert first.response_metadata["session_id"] == "s1"
    sessions.close()
