"""Embeddings on a real server through real clients: openai, LangChain's OpenAIEmbeddings and
HuggingFaceEndpointEmbeddings (TEI's /embed), RemoteRunnable on /embed; one batched encoder under them."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
from langserve import RemoteRunnable

from chains.backends.encoder import Encoder
from tests.conftest import hfchain_server, metric

TEXTS = ["The cat sat on the mat.", "Stock markets fell sharply today.", "A kitten rested on a rug."]


@pytest.fixture(scope="module")
def served(embedded_backend, tmp_path_factory):
    proc = hfchain_server(HFCHAIN_DATA_DIR=str(tmp_path_factory.mktemp("embeddings"))).wait("/ready")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def direct() -> np.ndarray:
    """The same encoder on torch in this process: what every route (on ONNX Runtime) must agree with."""
    return Encoder(runtime="torch").embed(TEXTS)


def close(got, want) -> None:
    got, want = np.asarray(got, dtype=np.float32), np.asarray(want, dtype=np.float32)
    assert got.shape == want.shape
    assert np.allclose(np.linalg.norm(got, axis=-1), 1, atol=1e-4)
    assert (np.sum(got * want, axis=-1) > 0.9999).all()  # batches pad differently: equal to float noise


def test_the_openai_client_gets_floats_base64_and_usage(served, direct):
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)
    reply = client.embeddings.create(model="any", input=TEXTS)
    assert [d.index for d in reply.data] == [0, 1, 2] and reply.model == "all-MiniLM-L6-v2"
    close([d.embedding for d in reply.data], direct)
    assert reply.usage.prompt_tokens == reply.usage.total_tokens > len(TEXTS)
    packed = client.embeddings.create(model="any", input=TEXTS[0], encoding_format="base64")
    close([np.frombuffer(base64.b64decode(packed.data[0].embedding), dtype="<f4")], direct[:1])
    raw = httpx.post(
        f"{served.url}/v1/embeddings", json={"input": TEXTS[0], "encoding_format": "base64"}
    ).json()
    close([np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")], direct[:1])
    assert httpx.get(f"{served.url}/ready").json()["encoder_runtime"] == "onnx-fp32"  # the default: auto


def test_token_ids_of_the_encoders_tokenizer_are_read_as_their_text(served, direct):
    ids = Encoder().tokens.text_ids(TEXTS[0])
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)
    close([client.embeddings.create(model="any", input=[ids]).data[0].embedding], direct[:1])


def test_langchain_clients_embed_the_same(served, direct):
    from langchain_huggingface import HuggingFaceEndpointEmbeddings
    from langchain_openai import OpenAIEmbeddings

    through_openai = OpenAIEmbeddings(
        model="any", base_url=f"{served.url}/v1", api_key="unused", check_embedding_ctx_length=False
    )
    close(through_openai.embed_documents(TEXTS), direct)
    close([through_openai.embed_query(TEXTS[1])], direct[1:2])
    from huggingface_hub import AsyncInferenceClient, InferenceClient

    tei = InferenceClient(model=f"{served.url}/embed")
    close(tei.feature_extraction(TEXTS), direct)
    # langchain-huggingface 1.x refuses a URL as `model`: give it the clients for the server instead
    through_tei = HuggingFaceEndpointEmbeddings()
    through_tei.client, through_tei.async_client = tei, AsyncInferenceClient(model=f"{served.url}/embed")
    close(through_tei.embed_documents(TEXTS), direct)
    close([await_query(through_tei, TEXTS[2])], direct[2:3])
    embed = RemoteRunnable(f"{served.url}/embed/")
    out = embed.invoke({"texts": TEXTS})
    close(out["embeddings"], direct)
    assert out["dimensions"] == 384 and out["usage"]["tokens"] > 0


def await_query(embeddings, text: str) -> list[float]:
    import asyncio

    return asyncio.run(embeddings.aembed_query(text))


def test_concurrent_requests_share_encoder_batches(served, direct):
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda i: client.embeddings.create(model="m", input=TEXTS[i % 3]), range(24)))
    for i, reply in enumerate(replies):
        close([reply.data[0].embedding], direct[i % 3 : i % 3 + 1])
    batches = metric(served.url, "hfchain_embedding_batches_total")
    requests = metric(served.url, "hfchain_embedding_requests_total")
    assert requests >= 24 and batches < requests  # some requests were encoded together


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/v1/embeddings", {"input": []}, 400, "input is empty"),
        ("/v1/embeddings", {"input": ["ok", "  "]}, 400, "input[1] is empty"),
        ("/v1/embeddings", {"input": "word " * 400}, 413, "reads at most 254"),
        ("/v1/embeddings", {"input": "x", "dimensions": 12}, 400, "gives 384"),
        ("/v1/embeddings", {"input": [[10**9]]}, 400, "token ids"),
        ("/v1/embeddings", {"input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
        ("/embed", {"inputs": "word " * 400}, 413, "truncate: true"),
        ("/embed/invoke", {"input": {"texts": []}}, 422, "texts"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_fix(served, path, body, status, says):
    answer = httpx.post(f"{served.url}{path}", json=body, timeout=60)
    assert answer.status_code == status, answer.text
    assert says in answer.text


def test_tei_truncate_cuts_to_the_encoders_limit(served):
    long = httpx.post(f"{served.url}/embed", json={"inputs": "word " * 400, "truncate": True}, timeout=60)
    assert long.status_code == 200 and len(long.json()[0]) == 384
