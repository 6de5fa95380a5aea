"""The endpoint backend against real servers on loopback, through the real huggingface_hub client.

Text generation: a TGI-protocol responder (tgi_responder.py) over the embedded model.
Chat: `transformers serve` running the embedded model (OpenAI /v1/chat/completions, pinned model name).
"""

import sys
from pathlib import Path

import httpx
import pytest
from langchain_core.messages import AIMessage

from chains import build_backend, build_chat_chain, build_generate_chain, load_settings
from tests.conftest import ServerProcess, free_port, hfchain_server

HERE = Path(__file__).resolve().parent
GREEDY = {"configurable": {"temperature": 0, "max_new_tokens": 20}}
QUESTION = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}


@pytest.fixture(scope="module")
def tgi(model_folder):
    args = [sys.executable, str(HERE / "tgi_responder.py"), "--model", model_folder, "--port", "{port}"]
    proc = ServerProcess(args).wait("/health", timeout=120)
    yield proc
    proc.stop()


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
