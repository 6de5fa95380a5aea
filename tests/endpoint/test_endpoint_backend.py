"""The endpoint backend against real servers on loopback, through the real huggingface_hub client.

Upstream: a second hfchain instance (the `server` fixture: TGI protocol on POST /, OpenAI chat on /v1),
and `transformers serve` for a server pinned to one model name.
"""

import sys
from pathlib import Path

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage
from langchain_huggingface import ChatHuggingFace, HuggingFaceEndpoint

from chains import build_backend, build_chat_chain, build_generate_chain, load_settings
from tests.conftest import ServerProcess, free_port, hfchain_server

HERE = Path(__file__).resolve().parent
GREEDY = {"configurable": {"temperature": 0, "max_new_tokens": 20}}
QUESTION = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}


@pytest.fixture(scope="module")
def tgi(server):
    """An hfchain instance is the TGI-protocol (and OpenAI chat) endpoint."""
    return server


@pytest.fixture(scope="module")
def openai_server(model_folder):
    serve = str(Path(sys.executable).parent / "transformers")
    args = [
        serve,
        "serve",
        model_folder,
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    ]
    proc = ServerProcess(args).wait("/health", timeout=180)
    yield proc
    proc.stop()


def endpoint_backend(url: str, **settings):
    return build_backend(load_settings(backend="endpoint", endpoint_url=url, **settings))


def test_text_generation_invoke_and_stream(tgi):
    chain = build_generate_chain(endpoint_backend(tgi.url))
    text = chain.invoke({"prompt": "The capital of France is"}, config=GREEDY)
    assert "Paris" in text and not text.startswith("The capital")
    chunks = list(chain.stream({"prompt": "The capital of France is"}, config=GREEDY))
    assert len(chunks) >= 3 and "".join(chunks) == text


def test_text_generation_multi_token_stop_in_stream(tgi):
    chain = build_generate_chain(endpoint_backend(tgi.url))
    full = chain.invoke({"prompt": "Count: 1, 2, 3,"}, config=GREEDY)
    assert " 5," in full
    config = {"configurable": {**GREEDY["configurable"], "stop": [" 5,"]}}
    chunks = list(chain.stream({"prompt": "Count: 1, 2, 3,"}, config=config))
    assert "".join(chunks) == full[: full.index(" 5,")]


def test_chat_through_chat_completions_with_pinned_model_name(openai_server, model_folder):
    backend = endpoint_backend(openai_server.url, endpoint_model=model_folder)
    chain = build_chat_chain(backend)
    reply = chain.invoke(QUESTION, config=GREEDY)
    assert isinstance(reply, AIMessage) and "Paris" in reply.content
    chunks = [c.content for c in chain.stream(QUESTION, config=GREEDY)]
    assert len(chunks) >= 3 and "Paris" in "".join(chunks)


def test_chat_through_hfchain_chat_completions(tgi):
    chain = build_chat_chain(endpoint_backend(tgi.url))
    reply = chain.invoke(QUESTION, config=GREEDY)
    assert isinstance(reply, AIMessage) and "Paris" in reply.content
    assert reply.usage_metadata["output_tokens"] > 0
    chunks = list(chain.stream(QUESTION, config=GREEDY))
    assert len(chunks) >= 3 and "".join(c.content for c in chunks) == reply.content


def test_stock_langchain_wrappers_over_hfchain(tgi):
    # greedy, as TGI reads it: no temperature, top_p or typical_p (the defaults, 0.8/0.95/0.95, sample)
    llm = HuggingFaceEndpoint(
        endpoint_url=tgi.url, max_new_tokens=12, temperature=None, top_p=None, typical_p=None
    )
    text = llm.invoke("The capital of France is")
    assert "Paris" in text and "".join(llm.stream("The capital of France is")) == text
    chat = ChatHuggingFace(llm=llm)  # sends model "dummy": hfchain answers with its one model
    reply = chat.invoke(QUESTION["messages"])
    assert "Paris" in reply.content and reply.response_metadata["finish_reason"] in {"stop", "length"}
    assert "".join(c.content for c in chat.stream(QUESTION["messages"])) == reply.content


def test_hfchain_server_generates_through_a_tgi_endpoint(tgi):
    server = hfchain_server(HFCHAIN_BACKEND="endpoint", HFCHAIN_ENDPOINT_URL=tgi.url).wait("/ready")
    try:
        body = {"input": {"prompt": "The capital of France is"}, "config": GREEDY}
        response = httpx.post(f"{server.url}/generate/invoke", json=body, timeout=60)
        assert response.status_code == 200 and "Paris" in response.json()["output"]
        streamed = httpx.post(f"{server.url}/generate/stream", json=body, timeout=60).text
        assert streamed.count("event: data") >= 3 and "event: end" in streamed
    finally:
        server.stop()


def test_hfchain_server_chats_through_another_hfchain(tgi):
    server = hfchain_server(HFCHAIN_BACKEND="endpoint", HFCHAIN_ENDPOINT_URL=tgi.url).wait("/ready")
    try:
        body = {"input": QUESTION, "config": GREEDY}
        response = httpx.post(f"{server.url}/chat/invoke", json=body, timeout=60)
        assert response.status_code == 200 and "Paris" in response.json()["output"]["content"]
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=60)
        chunks = list(
            client.chat.completions.create(
                model="m",
                messages=QUESTION["messages"],
                max_tokens=20,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert "Paris" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].usage.completion_tokens > 0  # the upstream's counts, relayed
    finally:
        server.stop()


def test_hfchain_server_chats_through_an_openai_endpoint(openai_server, model_folder):
    server = hfchain_server(
        HFCHAIN_BACKEND="endpoint",
        HFCHAIN_ENDPOINT_URL=openai_server.url,
        HFCHAIN_ENDPOINT_MODEL=model_folder,
    ).wait("/ready")
    try:
        body = {"input": QUESTION, "config": GREEDY}
        response = httpx.post(f"{server.url}/chat/invoke", json=body, timeout=60)
        assert response.status_code == 200 and "Paris" in response.json()["output"]["content"]
        streamed = httpx.post(f"{server.url}/chat/stream", json=body, timeout=60).text
        assert streamed.count("event: data") >= 3 and "Paris" in streamed and "event: end" in streamed
    finally:
        server.stop()


def test_unreachable_endpoint_gives_503_naming_the_url():
    dead = f"http://127.0.0.1:{free_port()}"
    server = hfchain_server(HFCHAIN_BACKEND="endpoint", HFCHAIN_ENDPOINT_URL=dead).wait("/ready")
    try:
        for route, body in [
            ("/generate/invoke", {"input": {"prompt": "hi"}}),
            ("/chat/invoke", {"input": QUESTION}),
        ]:
            response = httpx.post(f"{server.url}{route}", json=body, timeout=60)
            assert response.status_code == 503, response.text
            assert dead in response.json()["detail"] and response.headers["retry-after"]
    finally:
        server.stop()


def test_tools_and_structured_output_pass_through_to_a_second_hfchain(tgi):
    from pydantic import BaseModel

    class City(BaseModel):
        name: str
        country: str

    chat = endpoint_backend(tgi.url, max_new_tokens=48).chat_model

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    def get_time(timezone: str) -> str:
        """The time in a timezone."""
        return "12:00"

    # the stock ChatHuggingFace.bind_tools refuses a tool_choice with more than one tool
    reply = chat.bind_tools([get_weather, get_time], tool_choice="any").invoke(
        "What is the weather in Paris?"
    )
    assert reply.tool_calls and reply.tool_calls[0]["name"] in {"get_weather", "get_time"}
    named = chat.bind_tools([get_weather, get_time], tool_choice="get_time").invoke("Time in Tokyo?")
    assert [c["name"] for c in named.tool_calls] == ["get_time"]
    chain = build_chat_chain(endpoint_backend(tgi.url))
    value = {
        **QUESTION,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "City", "schema": City.model_json_schema()},
        },
    }
    City.model_validate_json(chain.invoke(value, config={"configurable": {"max_new_tokens": 48}}).content)


def test_the_agent_runs_over_the_endpoint_backend(tgi, tmp_path):
    from chains.agent.runner import build_agent
    from chains.sessions import SessionStore
    from chains.summarize import build_summarize_chain

    backend = endpoint_backend(tgi.url)
    sessions = SessionStore(f"sqlite:///{tmp_path / 'agent.db'}")
    settings = load_settings(agent_tools="calculator,current_time", agent_tool_choice="required")
    agent = build_agent(backend, settings, build_summarize_chain(backend), None, sessions)
    question = {"messages": [{"role": "user", "content": "What is 6 * 7?"}], "session_id": "e1"}
    reply = agent.invoke(question, {"configurable": {"max_new_tokens": 64, "max_steps": 2}})
    steps = sessions.history("e1")
    assert [m.type for m in steps] == ["human", "ai", "tool", "ai"] and not reply.tool_calls
    assert steps[1].tool_calls[0]["name"] in {"calculator", "current_time"}  # a call made by the remote model
    assert steps[2].tool_call_id == steps[1].tool_calls[0]["id"] and steps[3].content == reply.content
    sessions.close()
