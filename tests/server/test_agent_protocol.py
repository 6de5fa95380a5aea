"""The Agent Protocol on a real server through langgraph-sdk and RemoteGraph: assistants, threads, runs
streamed in each mode, waited, joined and cancelled, history, approvals (approve, edit, reject, and after a
restart), 404/409/422 in the protocol's shape, and threads kept apart by tenant."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError

from tests.conftest import hfchain_server, metric, wait_for

pytestmark = pytest.mark.server

ASK = {"messages": [{"role": "user", "content": "What is 12 times 7?"}]}
CALL = {"tool_choice": "required", "max_steps": 2, "max_new_tokens": 40}  # the first step calls a tool
SHORT = {"max_steps": 1, "max_new_tokens": 8}
ENV = {"HFCHAIN_AGENT_TOOLS": "calculator,current_time", "HFCHAIN_MAX_NEW_TOKENS": "48"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("threads")


@pytest.fixture(scope="module")
def url(data_dir):
    proc = hfchain_server(**ENV, HFCHAIN_DATA_DIR=str(data_dir)).wait("/ready")
    yield proc.url
    proc.stop()


@pytest.fixture
def client(url):
    return get_sync_client(url=url, api_key=None)


def roles(values: dict) -> list[str]:
    return [m["type"] for m in values["messages"]]


def test_the_agent_is_an_assistant_with_its_schemas_and_graph(client):
    (found,) = client.assistants.search()
    assert found["graph_id"] == "agent"
    assert client.assistants.get("agent")["assistant_id"] == found["assistant_id"]
    assert client.assistants.get(found["assistant_id"])["name"] == "agent"
    schemas = client.assistants.get_schemas("agent")
    assert "messages" in json.dumps(schemas["input_schema"])
    nodes = {node["id"] for node in client.assistants.get_graph("agent")["nodes"]}
    assert {"model", "tools"} <= nodes
    with pytest.raises(NotFoundError, match="not found"):
        client.assistants.get("nobody")


def test_threads_are_created_found_and_deleted(client):
    made = client.threads.create(metadata={"purpose": "test", "n": 1})
    thread_id = made["thread_id"]
    assert made["status"] == "idle" and client.threads.get(thread_id)["metadata"]["purpose"] == "test"
    assert thread_id in [t["thread_id"] for t in client.threads.search(metadata={"purpose": "test"})]
    with pytest.raises(ConflictError, match="exists"):
        client.threads.create(thread_id=thread_id)
    assert client.threads.create(thread_id=thread_id, if_exists="do_nothing")["thread_id"] == thread_id
    client.threads.delete(thread_id)
    with pytest.raises(NotFoundError):
        client.threads.get(thread_id)


def test_a_streamed_run_sends_each_mode_and_the_thread_keeps_the_conversation(client):
    thread_id = client.threads.create()["thread_id"]
    parts = list(
        client.runs.stream(
            thread_id,
            "agent",
            input=ASK,
            config={"configurable": CALL},
            stream_mode=["values", "updates", "messages-tuple"],
        )
    )
    events = [p.event for p in parts]
    assert events[0] == "metadata" and {"values", "updates", "messages"} <= set(events)
    final = [p.data for p in parts if p.event == "values"][-1]
    assert roles(final) == ["human", "ai", "tool", "ai"]
    assert final["messages"][1]["tool_calls"][0]["name"] in ("calculator", "current_time")
    chunk, meta = next(p.data for p in parts if p.event == "messages")
    assert chunk["type"] == "AIMessageChunk" and meta["langgraph_node"] == "model"
    updated = {node for p in parts if p.event == "updates" for node in p.data}
    assert {"model", "tools"} <= updated
    state = client.threads.get_state(thread_id)
    assert state["values"] == final and state["next"] == [] and state["checkpoint"]["thread_id"] == thread_id
    assert client.threads.get(thread_id)["status"] == "idle"
    again = client.runs.wait(
        thread_id,
        "agent",
        input={"messages": [{"role": "user", "content": "Thanks!"}]},
        config={"configurable": SHORT},
    )
    assert roles(again) == ["human", "ai", "tool", "ai", "human", "ai"]  # the thread continued
    history = client.threads.get_history(thread_id, limit=50)
    assert (
        history[0]["checkpoint"]["checkpoint_id"]
        == client.threads.get_state(thread_id)["checkpoint"]["checkpoint_id"]
    )
    assert len(history) >= 6 and len(history[-1]["values"].get("messages", [])) == 0  # newest first


def test_stateless_runs_wait_and_stream(client):
    values = client.runs.wait(None, "agent", input=ASK, config={"configurable": SHORT})
    assert roles(values) == ["human", "ai"] and values["messages"][1]["content"]
    parts = list(
        client.runs.stream(None, "agent", input=ASK, config={"configurable": SHORT}, stream_mode="events")
    )
    kinds = {p.data["event"] for p in parts if p.event == "events"}
    assert {"on_chain_start", "on_chat_model_stream", "on_chain_end"} <= kinds


def test_a_background_run_is_listed_joined_and_read(client):
    thread_id = client.threads.create()["thread_id"]
    run = client.runs.create(thread_id, "agent", input=ASK, config={"configurable": SHORT})
    assert run["status"] in ("pending", "running") and run["thread_id"] == thread_id
    joined = client.runs.join(thread_id, run["run_id"])
    assert roles(joined) == ["human", "ai"]
    assert client.runs.get(thread_id, run["run_id"])["status"] == "success"
    assert [r["run_id"] for r in client.runs.list(thread_id)] == [run["run_id"]]


def test_cancelling_a_run_stops_it_and_frees_the_model(client, url):
    thread_id = client.threads.create()["thread_id"]
    long = {"max_steps": 1, "max_new_tokens": 2000}
    ask = {"messages": [{"role": "user", "content": "Write a very long story about a dragon."}]}
    run = client.runs.create(thread_id, "agent", input=ask, config={"configurable": long})
    with pytest.raises(ConflictError, match="busy"):
        client.runs.create(thread_id, "agent", input=ask)
    client.runs.cancel(thread_id, run["run_id"], wait=True)
    assert client.runs.get(thread_id, run["run_id"])["status"] == "interrupted"
    assert wait_for(lambda: metric(url, "hfchain_batch_running") == 0, timeout=30)  # its rows left the batch


def test_a_dropped_stream_cancels_its_run(client, url):
    thread_id = client.threads.create()["thread_id"]
    ask = {"messages": [{"role": "user", "content": "Write a very long story about a dragon."}]}
    body = {
        "assistant_id": "agent",
        "input": ask,
        "config": {"configurable": {"max_steps": 1, "max_new_tokens": 2000}},
    }
    with httpx.stream("POST", f"{url}/threads/{thread_id}/runs/stream", json=body, timeout=60) as response:
        next(response.iter_lines())  # the run has started
    runs = client.runs.list(thread_id)
    for _ in range(100):
        if client.runs.get(thread_id, runs[0]["run_id"])["status"] == "interrupted":
            break
        asyncio.run(asyncio.sleep(0.1))
    assert client.runs.get(thread_id, runs[0]["run_id"])["status"] == "interrupted"


def approval_run(client, thread_id: str) -> dict:
    """A run that calls the calculator, which needs approval: it pauses before the tool acts."""
    config = {"configurable": {**CALL, "require_approval": ["calculator", "current_time"]}}
    return client.runs.wait(thread_id, "agent", input=ASK, config=config)


def pending_call(client, thread_id: str) -> dict:
    state = client.threads.get_state(thread_id)
    (task,) = [t for t in state["tasks"] if t["interrupts"]]
    (interrupt,) = task["interrupts"]
    return interrupt["value"]["action_requests"][0]


def test_an_approved_call_runs_and_the_answer_follows(client):
    thread_id = client.threads.create()["thread_id"]
    paused = approval_run(client, thread_id)
    assert paused["__interrupt__"] and roles(paused) == ["human", "ai"]
    assert client.threads.get(thread_id)["status"] == "interrupted"
    call = pending_call(client, thread_id)
    assert call["name"] in ("calculator", "current_time") and isinstance(call["args"], dict)
    done = client.runs.wait(thread_id, "agent", command={"resume": {"decisions": [{"type": "approve"}]}})
    assert roles(done) == ["human", "ai", "tool", "ai"] and "__interrupt__" not in done
    assert done["messages"][2]["status"] == "success"
    with pytest.raises(httpx.HTTPStatusError) as refused:  # nothing is paused any more
        client.runs.wait(thread_id, "agent", command={"resume": {"decisions": [{"type": "approve"}]}})
    assert refused.value.response.status_code == 409


def test_an_edited_call_runs_with_the_new_arguments(client):
    thread_id = client.threads.create()["thread_id"]
    approval_run(client, thread_id)
    edited = {"type": "edit", "edited_action": {"name": "calculator", "args": {"expression": "6 * 7"}}}
    if pending_call(client, thread_id)["name"] != "calculator":
        pytest.skip("the model called current_time; an edit must keep the tool")
    done = client.runs.wait(thread_id, "agent", command={"resume": {"decisions": [edited]}})
    assert "42" in done["messages"][2]["content"]


def test_a_rejected_call_does_not_run_and_the_model_reads_the_reason(client):
    thread_id = client.threads.create()["thread_id"]
    approval_run(client, thread_id)
    reject = {"type": "reject", "message": "not now, please"}
    done = client.runs.wait(thread_id, "agent", command={"resume": {"decisions": [reject]}})
    tool = done["messages"][2]
    assert tool["type"] == "tool" and tool["status"] == "error" and "not now, please" in tool["content"]


def test_a_paused_run_survives_a_restart(data_dir):
    first = hfchain_server(**ENV, HFCHAIN_DATA_DIR=str(data_dir)).wait("/ready")
    try:
        client = get_sync_client(url=first.url, api_key=None)
        thread_id = client.threads.create()["thread_id"]
        approval_run(client, thread_id)
    finally:
        first.stop()
    second = hfchain_server(**ENV, HFCHAIN_DATA_DIR=str(data_dir)).wait("/ready")
    try:
        client = get_sync_client(url=second.url, api_key=None)
        assert client.threads.get(thread_id)["status"] == "interrupted"
        done = client.runs.wait(thread_id, "agent", command={"resume": {"decisions": [{"type": "approve"}]}})
        assert roles(done) == ["human", "ai", "tool", "ai"]
    finally:
        second.stop()


def test_remote_graph_runs_as_a_node_of_a_local_graph(url):
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.pregel.remote import RemoteGraph

    remote = RemoteGraph("agent", url=url, config={"configurable": SHORT})
    local = StateGraph(MessagesState).add_node("hfchain", remote).add_edge(START, "hfchain").compile()
    result = local.invoke({"messages": [{"role": "user", "content": "Say hello."}]})
    assert [m.type for m in result["messages"]] == ["human", "ai"] and result["messages"][-1].content


def test_the_async_client_streams_too(url):
    async def run() -> list[str]:
        client = get_client(url=url, api_key=None)
        thread = await client.threads.create()
        parts = client.runs.stream(thread["thread_id"], "agent", input=ASK, config={"configurable": SHORT})
        return [part.event async for part in parts]

    assert asyncio.run(run())[:2] == ["metadata", "values"]


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/threads/nope/runs/wait", {"assistant_id": "agent", "input": ASK}, 404, "thread 'nope' not found"),
        ("/runs/wait", {"assistant_id": "other", "input": ASK}, 404, "assistant 'other' not found"),
        ("/runs/wait", {"assistant_id": "agent"}, 422, "needs input"),
        ("/runs/wait", {"assistant_id": "agent", "input": ASK, "stream_mode": "debug"}, 422, "stream_mode"),
        ("/runs/wait", {"input": ASK}, 422, "assistant_id"),
        (
            "/runs/wait",
            {"assistant_id": "agent", "input": ASK, "config": {"configurable": {"require_approval": ["rm"]}}},
            422,
            "require_approval",
        ),
        (
            "/runs/wait",
            {"assistant_id": "agent", "input": ASK, "config": {"configurable": {"max_steps": 99}}},
            422,
            "max_steps",
        ),
    ],
)
def test_bad_requests_get_the_protocols_error_shape(url, path, body, status, says):
    answer = httpx.post(f"{url}{path}", json=body, timeout=60)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["detail"]


def test_a_resume_payload_that_is_not_a_decision_is_refused(client):
    thread_id = client.threads.create()["thread_id"]
    approval_run(client, thread_id)
    with pytest.raises(UnprocessableEntityError, match=r"decisions\.0\.type"):
        client.runs.create(thread_id, "agent", command={"resume": {"decisions": [{"type": "maybe"}]}})
    with pytest.raises(UnprocessableEntityError, match="1 pending calls"):
        client.runs.create(thread_id, "agent", command={"resume": {"decisions": []}})
    with pytest.raises(UnprocessableEntityError, match="edited_action"):
        client.runs.create(thread_id, "agent", command={"resume": {"decisions": [{"type": "edit"}]}})


def test_interrupt_before_a_node_pauses_the_run_there(client):
    thread_id = client.threads.create()["thread_id"]
    client.runs.wait(thread_id, "agent", input=ASK, config={"configurable": CALL}, interrupt_before=["tools"])
    state = client.threads.get_state(thread_id)
    assert state["next"] == ["tools"] and roles(state["values"]) == ["human", "ai"]
    done = client.runs.wait(thread_id, "agent", input=None, config={"configurable": CALL})
    assert roles(done) == ["human", "ai", "tool", "ai"]
