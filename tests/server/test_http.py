"""A real hfchain server (uvicorn on 127.0.0.1, embedded model) driven by httpx and RemoteRunnable."""

import json

import httpx
import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langserve import RemoteRunnable

from tests.conftest import metric, wait_for

QUESTION = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}
GREEDY = {"configurable": {"temperature": 0, "max_new_tokens": 20}}
OUT = 'hfchain_tokens_total{direction="out"}'  # tokens the server generated


def sse_events(response: httpx.Response) -> list[tuple[str, str]]:
    """(event, data) pairs of a server-sent-event body."""
    events = []
    for block in response.text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        if "event" in fields:
            events.append((fields["event"].strip(), fields.get("data", "").strip()))
    return events


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


def test_health_and_ready(http):
    assert http.get("/health").json() == {"status": "ok"}
    ready = http.get("/ready").json()
    assert ready["status"] == "ready" and ready["model"] == "SmolLM2-135M-Instruct"


def test_chat_invoke_answers_paris(http):
    response = http.post("/chat/invoke", json={"input": QUESTION, "config": GREEDY})
    assert response.status_code == 200
    output = response.json()["output"]
    assert output["type"] == "ai" and "Paris" in output["content"]
    assert response.headers["x-request-id"]


def test_chat_accepts_langchain_serialised_messages(http):
    body = {
        "input": {"messages": [{"type": "human", "content": "What is the capital of France?"}]},
        "config": GREEDY,
    }
    assert "Paris" in http.post("/chat/invoke", json=body).json()["output"]["content"]


def test_generate_invoke_and_batch(http):
    body = {"input": {"prompt": "The capital of France is"}, "config": GREEDY}
    text = http.post("/generate/invoke", json=body).json()["output"]
    assert "Paris" in text and not text.startswith("The capital")
    batch = http.post(
        "/generate/batch", json={"inputs": [{"prompt": "1, 2, 3,"}, {"prompt": "Hello"}], "config": GREEDY}
    ).json()["output"]
    assert len(batch) == 2 and all(isinstance(t, str) and t for t in batch)


def test_stream_sends_one_event_per_few_tokens_and_honours_stop(http):
    config = {"configurable": {"temperature": 0, "max_new_tokens": 20, "stop": ["of France"]}}
    response = http.post("/chat/stream", json={"input": QUESTION, "config": config})
    events = sse_events(response)
    data = [json.loads(d)["content"] for name, d in events if name == "data"]
    assert events[-1][0] == "end" and len([d for d in data if d]) >= 2
    assert "".join(data) == "The capital "


def test_stream_events(http):
    body = {"input": {"prompt": "Hi"}, "config": {"configurable": {"max_new_tokens": 4}}}
    events = sse_events(http.post("/generate/stream_events", json=body))
    kinds = {json.loads(d)["event"] for name, d in events if name == "data"}
    assert {"on_chain_start", "on_llm_stream", "on_chain_end"} <= kinds


@pytest.mark.parametrize("route", ["/generate", "/chat"])
def test_schemas_and_playground(http, route):
    assert http.get(f"{route}/input_schema").status_code == 200
    assert http.get(f"{route}/output_schema").status_code == 200
    knobs = http.get(f"{route}/config_schema").json()["$defs"]["Configurable"]["properties"]
    own = {"session_id"} if route == "/chat" else set()
    assert set(knobs) == {
        "max_new_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "speculation",
        "logprobs",
        *own,
    }
    page = http.get(f"{route}/playground/")
    assert page.status_code == 200 and "<html" in page.text.lower()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 422),
        (b"{oops", 400),
        (b'{"input": {"prompt": "\xff\xfe"}}', 400),
        (b'{"input": {}}', 422),
        (b'{"input": {"prompt": 42}}', 422),
        (b'{"input": {"prompt": "x"}, "config": {"configurable": {"temperature": "hot"}}}', 422),
        (b'{"input": {"prompt": "x"}, "config": {"configurable": {"top_p": 3}}}', 422),
        (b'{"input": {"prompt": "x"}, "config": {"configurable": {"max_new_tokens": 100000}}}', 422),
    ],
)
def test_bad_input_gets_a_4xx_over_http(http, body, status):
    response = http.post("/generate/invoke", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status and response.json()["detail"]


def test_config_null_works_over_http(http):
    body = {"input": {"prompt": "Hi"}, "config": None}
    assert http.post("/generate/invoke", json=body).status_code == 200


def test_remote_runnable_invoke_batch_stream(server):
    chat = RemoteRunnable(f"{server.url}/chat/")
    reply = chat.invoke({"messages": [HumanMessage("What is the capital of France?")]}, config=GREEDY)
    assert isinstance(reply, AIMessage) and "Paris" in reply.content
    replies = chat.batch([QUESTION, {"messages": [("human", "Say hello.")]}], config=GREEDY)
    assert len(replies) == 2 and "Paris" in replies[0].content
    chunks = list(chat.stream(QUESTION, config=GREEDY))
    assert len(chunks) >= 3 and "Paris" in "".join(c.content for c in chunks)
    generate = RemoteRunnable(f"{server.url}/generate/")
    assert "Paris" in generate.invoke({"prompt": "The capital of France is"}, config=GREEDY)


def test_a_client_that_leaves_a_stream_frees_the_model(server):
    cancelled, generated = metric(server.url, "hfchain_cancellations_total"), metric(server.url, OUT)
    body = {
        "input": {"prompt": "Write a very long essay about the sea."},
        "config": {"configurable": {"max_new_tokens": 2000}},
    }
    with httpx.Client(base_url=server.url, timeout=60) as client:
        with client.stream("POST", "/generate/stream", json=body) as response:
            data_events = 0
            for line in response.iter_lines():
                data_events += line.startswith("event: data")
                if data_events == 3:
                    break  # leave mid-stream: the connection closes with the block
        assert wait_for(lambda: metric(server.url, "hfchain_cancellations_total") == cancelled + 1)
        assert wait_for(lambda: metric(server.url, "hfchain_batch_running") == 0)
        left_after = metric(server.url, OUT) - generated  # the tokens the dropped stream generated
        assert 3 <= left_after < 1000  # stopped far short of its 2000
        quick = {"input": {"prompt": "Hi"}, "config": {"configurable": {"max_new_tokens": 2}}}
        assert client.post("/generate/invoke", json=quick).status_code == 200
    assert 1 <= metric(server.url, OUT) - generated - left_after <= 2  # the quick one ran, nothing else


def test_over_long_generate_gets_413_with_the_token_numbers(http):
    body = {"input": {"prompt": "word " * 9000}, "config": {"configurable": {"max_new_tokens": 64}}}
    for route in ("/generate/invoke", "/generate/stream"):
        response = http.post(route, json=body)
        assert response.status_code == 413, response.text
        detail = response.json()
        assert detail["context_window"] == 8192 and detail["budget"] == 8192 - 64 - 16
        assert detail["prompt_tokens"] > detail["budget"] and detail["counting"] == "tokenizer"


def test_over_long_chat_message_gets_413(http):
    body = {"input": {"messages": [{"role": "user", "content": "word " * 9000}]}}
    response = http.post("/chat/stream", json=body)
    assert response.status_code == 413 and "/summarize" in response.json()["detail"]


def test_summarize_over_http_reports_chunks_and_budget(http):
    text = "The harbour was quiet that night. The boats rocked at their moorings. " * 20
    body = {"input": {"text": text}, "config": {"configurable": {"max_new_tokens": 32}}}
    output = http.post("/summarize/invoke", json=body).json()["output"]
    assert output["summary"].strip() and output["chunks"] == 1 and output["model_calls"] == 1
    assert output["budget"] == 8192 - 32 - 16 and output["token_counting"] == "tokenizer"
    assert output["tokens_in"] == output["chunk_tokens"][0] and output["tokens_out"] > 0
    events = sse_events(http.post("/summarize/stream", json=body))
    data = [json.loads(d) for name, d in events if name == "data"]
    assert "progress" in data[0] and sum("summary" in d for d in data) > 1 and "chunks" in data[-1]


def test_classify_over_http(http):
    body = {"input": {"text": "I loved this film, it was wonderful.", "labels": ["positive", "negative"]}}
    output = http.post("/classify/invoke", json=body).json()["output"]
    assert output["label"] == "positive" and output["method"] == "embedding-zero-shot"
    assert abs(sum(output["scores"].values()) - 1) < 1e-6 and output["chunks"] == 1


def test_classify_splits_long_text_over_http(http):
    text = "A wonderful, moving film with brilliant acting. " * 60
    body = {"input": {"text": text, "labels": ["positive", "negative"], "per_chunk": True}}
    output = http.post("/classify/invoke", json=body).json()["output"]
    assert output["chunks"] > 1 and len(output["per_chunk"]) == output["chunks"]
    assert output["usage"]["tokens"] > 256 and output["label"] == "positive"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"text": "", "labels": ["a", "b"]}, "text"),
        ({"text": "x", "labels": ["a"]}, "two"),
        ({"text": "x", "labels": ["a", "a"]}, "distinct"),
        ({"text": "x", "labels": ["a", ""]}, "empty"),
        ({"text": "x", "labels": ["a", "b"], "model": "nope"}, "unknown classifier"),
        ({"text": "x"}, "give labels"),
    ],
)
def test_classify_bad_input_gets_422(http, value, fragment):
    for route in ("/classify/invoke", "/classify/stream"):
        response = http.post(route, json={"input": value})
        assert response.status_code == 422, response.text
        assert fragment in json.dumps(response.json())


def test_chat_playground_request_streams_a_reply(http):
    """The chat playground's own request: /chat/stream_log with LangChain-serialised messages."""
    body = {
        "input": {"messages": [{"content": "What is the capital of France?", "type": "human"}]},
        "config": {},
    }
    events = sse_events(http.post("/chat/stream_log", json=body))
    ops = [op for name, data in events if name == "data" for op in json.loads(data)["ops"]]
    streamed = [op["value"]["content"] for op in ops if op["path"] == "/streamed_output/-"]
    assert len(streamed) >= 3 and "Paris" in "".join(streamed) and events[-1][0] == "end"


def test_garbage_collection_runs_again_once_the_model_is_loaded(server):
    gen0 = 'python_gc_collections_total{generation="0"}'
    before = metric(server.url, gen0)
    for _ in range(3):
        httpx.post(f"{server.url}/generate/invoke", json={"input": {"prompt": "Hi"}}, timeout=60)
    assert metric(server.url, gen0) > before  # paused during start-up only (server/startup.py)
    assert metric(server.url, "process_resident_memory_bytes") > 100 * 2**20
