"""A real server on HFCHAIN_RUNTIME=onnx (int4): the OpenAI client, LangChain's ChatOpenAI with tools and
RemoteRunnable work as on torch, and concurrent requests get the replies they get alone."""

from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langserve import RemoteRunnable

from tests.conftest import hfchain_server

QUESTIONS = ["What is the capital of France?", "Name three fruits.", "How do I boil an egg?", "What is rain?"]


@pytest.fixture(scope="module")
def onnx_server():
    proc = hfchain_server(HFCHAIN_RUNTIME="onnx", HFCHAIN_MAX_NEW_TOKENS="32").wait("/ready", timeout=300)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(onnx_server):
    return openai.OpenAI(base_url=f"{onnx_server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def ask(client, question: str, **extra) -> str:
    reply = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": question}], temperature=0, max_tokens=24, **extra
    )
    return reply.choices[0].message.content


def test_ready_and_metrics_name_the_runtime_and_the_log_the_export(onnx_server):
    ready = httpx.get(f"{onnx_server.url}/ready", timeout=10).json()
    assert ready["status"] == "ready" and ready["runtime"] == "onnx-int4"
    text = httpx.get(f"{onnx_server.url}/metrics", timeout=10).text
    assert 'runtime="onnx-int4"' in text
    log = onnx_server.log.read_text()
    assert "ONNX model" in log and ("from the cache" in log or "exported" in log)


def test_concurrent_chats_get_the_replies_they_get_alone(client):
    alone = [ask(client, q) for q in QUESTIONS]
    assert "Paris" in alone[0]
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        together = list(pool.map(lambda q: ask(client, q), QUESTIONS))
    assert together == alone


def test_a_stream_and_its_usage(client):
    stream = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": QUESTIONS[0]}],
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text and reasons == ["length"] and chunks[-1].usage.completion_tokens == 5


def test_tools_and_structured_output_through_chat_openai(onnx_server):
    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    llm = ChatOpenAI(
        base_url=f"{onnx_server.url}/v1", api_key="unused", model="m", temperature=0, max_tokens=48
    )
    reply = llm.bind_tools([get_weather], tool_choice="required").invoke("What is the weather in Paris?")
    assert len(reply.tool_calls) == 1 and reply.tool_calls[0]["name"] == "get_weather"
    assert isinstance(reply.tool_calls[0]["args"]["city"], str)
    schema = {
        "title": "Place",
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    data = llm.with_structured_output(schema, method="json_schema").invoke("Paris is in France.")
    assert isinstance(data["city"], str)


def test_remote_runnable_and_classification(onnx_server):
    text = RemoteRunnable(f"{onnx_server.url}/generate").invoke(
        {"prompt": "The capital of France is"}, config={"configurable": {"max_new_tokens": 8}}
    )
    assert isinstance(text, str) and text.strip()
    result = RemoteRunnable(f"{onnx_server.url}/classify").invoke(
        {"text": "A wonderful, moving film.", "labels": ["positive", "negative"], "method": "llm"}
    )
    assert (
        set(result["scores"]) == {"positive", "negative"} and abs(sum(result["scores"].values()) - 1) < 1e-6
    )
