"""The session store (SQLite and PostgreSQL) and the chat chain's use of it, over fake models."""

import threading

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ValidationError

from chains.chat import build_chat_chain
from chains.errors import InvalidInput, SessionsUnavailable
from chains.sessions import SessionStore
from tests.unit.fakes import KnobFakeChat, fake_backend


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """The store on SQLite in a temp folder, and on a fresh database of a real PostgreSQL server."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/nested/sessions.db"
    else:
        url = request.getfixturevalue("postgres").new_database()
    sessions = SessionStore(url)
    yield sessions
    sessions.close()


def test_turns_round_trip_in_order(store):
    store.append("s1", [HumanMessage("hi"), AIMessage("hello")])
    store.append("s1", [HumanMessage("again"), AIMessage("yes")])
    store.append("other", [HumanMessage("elsewhere"), AIMessage("no")])
    assert [m.content for m in store.history("s1")] == ["hi", "hello", "again", "yes"]
    assert [type(m) for m in store.history("s1")] == [HumanMessage, AIMessage] * 2
    exported = store.export("s1")
    assert exported["turns"] == 2 and exported["messages"][0] == {"role": "user", "content": "hi"}
    assert store.history("new") == [] and store.export("new") is None


def test_delete_resets_one_session(store):
    store.append("s1", [HumanMessage("hi"), AIMessage("hello")])
    store.append("s2", [HumanMessage("hi"), AIMessage("hello")])
    assert store.delete("s1") == 2 and store.delete("s1") == 0
    assert store.history("s1") == [] and len(store.history("s2")) == 2


def test_a_second_store_on_the_same_file_sees_the_turns(store, tmp_path):
    store.append("s1", [HumanMessage("kept"), AIMessage("ok")])
    again = SessionStore(store.url)
    assert [m.content for m in again.history("s1")] == ["kept", "ok"]
    again.close()


def test_concurrent_appends_lose_nothing_and_keep_turns_whole(store):
    def turn(i: int) -> None:
        store.append("busy", [HumanMessage(f"q{i}"), AIMessage(f"a{i}")])

    threads = [threading.Thread(target=turn, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    contents = [m.content for m in store.history("busy")]
    assert len(contents) == 80
    pairs = list(zip(contents[::2], contents[1::2], strict=True))
    assert sorted(pairs) == sorted((f"q{i}", f"a{i}") for i in range(40))
    assert all(q[1:] == a[1:] for q, a in pairs)  # each question is followed by its own answer


@pytest.mark.parametrize("url", ["nosuchdb://x", "sqlite:////proc/forbidden/sessions.db"])
def test_an_unusable_database_url_names_the_setting(url):
    with pytest.raises(SessionsUnavailable, match="HFCHAIN_SESSIONS_URL"):
        SessionStore(url)


def test_chat_chain_prepends_the_history_and_stores_the_turn(store):
    backend = fake_backend(["first reply", "second reply"])
    chain = build_chat_chain(backend, "be brief", store)
    chain.invoke({"messages": [{"role": "user", "content": "one"}], "session_id": "c1"})
    reply = chain.invoke(
        {
            "messages": [{"role": "system", "content": "new rules"}, {"role": "user", "content": "two"}],
            "session_id": "c1",
        }
    )
    assert reply.content == "second reply" and reply.response_metadata["session_id"] == "c1"
    stored = store.history("c1")
    assert [m.content for m in stored] == ["one", "first reply", "two", "second reply"]
    assert not any(isinstance(m, SystemMessage) for m in stored)  # system messages apply to one turn


def test_streamed_turns_are_stored_once_complete(store):
    chain = build_chat_chain(fake_backend(["streamed words"]), None, store)
    chunks = list(chain.stream({"messages": [{"role": "user", "content": "go"}], "session_id": "st"}))
    assert len(chunks) > 1
    assert [m.content for m in store.history("st")] == ["go", "streamed words"]


def test_an_abandoned_stream_stores_nothing(store):
    chain = build_chat_chain(fake_backend(["streamed words"]), None, store)
    stream = chain.stream({"messages": [{"role": "user", "content": "go"}], "session_id": "gone"})
    next(stream)
    stream.close()
    assert store.history("gone") == []


@pytest.mark.parametrize("session_id", ["", "has space", "x" * 200, "../etc", "-lead"])
def test_bad_session_ids_are_refused(store, session_id):
    chain = build_chat_chain(fake_backend(), None, store)
    with pytest.raises(ValidationError, match="session_id"):
        chain.invoke({"messages": [{"role": "user", "content": "x"}], "session_id": session_id})


def test_session_id_without_a_store_says_so():
    chain = build_chat_chain(fake_backend(), None, None)
    with pytest.raises(InvalidInput, match="sessions are not enabled"):
        chain.invoke({"messages": [{"role": "user", "content": "x"}], "session_id": "s"})


def test_session_id_from_config_and_a_resent_history_stored_once(store):
    chain = build_chat_chain(fake_backend(["one", "two"]), "", store)
    config = {"configurable": {"session_id": "cfg-1"}}
    chain.invoke({"messages": [{"role": "user", "content": "first"}]}, config=config)
    resent = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "one"},
        {"role": "user", "content": "second"},
    ]
    chain.invoke({"messages": resent}, config=config)  # what the playground sends
    assert [m.content for m in store.history("cfg-1")] == ["first", "one", "second", "two"]


def test_session_id_twice_with_different_values_is_refused(store):
    chain = build_chat_chain(fake_backend(), "", store)
    value = {"messages": [{"role": "user", "content": "x"}], "session_id": "a"}
    with pytest.raises(InvalidInput, match="twice"):
        chain.invoke(value, config={"configurable": {"session_id": "b"}})
    with pytest.raises(InvalidInput, match="session_id"):
        chain.invoke({"messages": value["messages"]}, config={"configurable": {"session_id": "bad id!"}})


def test_a_turn_that_calls_a_tool_is_stored_with_its_call(store):
    class Caller(KnobFakeChat):
        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            call = {"name": "now", "args": {}, "id": "c1", "type": "tool_call"}
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content="", tool_calls=[call]))])

    backend = fake_backend()
    backend.chat_model = Caller(responses=["x"])
    chain = build_chat_chain(backend, "", store)
    chain.invoke({"messages": [{"role": "user", "content": "time?"}], "session_id": "tools-1"})
    stored = store.history("tools-1")
    assert [c["id"] for c in stored[-1].tool_calls] == ["c1"]
    follow_up = {
        "messages": [{"role": "tool", "tool_call_id": "c1", "content": "12:00"}],
        "session_id": "tools-1",
    }
    chain.invoke(follow_up)
    assert [m.type for m in store.history("tools-1")] == ["human", "ai", "tool", "ai"]


def test_a_url_whose_driver_is_missing_names_the_package():
    with pytest.raises(SessionsUnavailable) as raised:
        SessionStore("postgresql+pg8000://user@127.0.0.1:1/db")
    assert "pip install pg8000" in raised.value.message


def test_stores_opened_at_once_on_an_empty_postgresql_database_do_not_race(postgres):
    url, opened, errors = postgres.new_database(), [], []

    def open_store() -> None:
        try:
            opened.append(SessionStore(url))
        except SessionsUnavailable as error:
            errors.append(error)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(opened) == 6
    opened[0].append("s", [HumanMessage("hi"), AIMessage("hello")])
    assert [len(store.history("s")) for store in opened] == [2] * 6
    for store in opened:
        store.close()


def test_a_stopped_postgresql_is_a_503_naming_the_database_and_recovers(postgres):
    store = SessionStore(postgres.new_database(), connect_timeout=2)
    store.append("s", [HumanMessage("hi"), AIMessage("hello")])
    postgres.stop()
    try:
        with pytest.raises(SessionsUnavailable) as raised:
            store.history("s")
        assert raised.value.details["retry_after"] == 1
        assert "database postgresql+psycopg://" in raised.value.message
    finally:
        postgres.start()
    assert len(store.history("s")) == 2  # the pool checks its connections: no restart needed
    store.close()


def test_a_long_session_reads_back_only_its_last_turns(store, monkeypatch):
    import chains.sessions

    monkeypatch.setattr(chains.sessions, "HISTORY_TURNS", 3)
    for i in range(5):
        store.append("long", [HumanMessage(f"q{i}"), AIMessage(f"a{i}")])
    assert [m.content for m in store.history("long")] == ["q2", "a2", "q3", "a3", "q4", "a4"]
    assert store.export("long")["turns"] == 5  # all of it is still stored and shown
