"""OpenAI's legacy POST /v1/completions on a real server, through the openai client and langchain-openai's
OpenAI LLM: the same text as TGI's route, echo, several prompts and n seeded samples, token-id prompts,
streams, and 400s that say what to fix."""

from __future__ import annotations

import httpx
import openai
import pytest
from langchain_openai import OpenAI

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_a_completion_is_the_same_text_as_tgis_route(server, client, embedded_backend):
    reply = client.completions.create(model="any", prompt=PROMPT, max_tokens=8, temperature=0)
    tgi = httpx.post(server.url, json={"inputs": PROMPT, "parameters": {"max_new_tokens": 8}}, timeout=120)
    choice = reply.choices[0]
    assert reply.object == "text_completion" and reply.model == "SmolLM2-135M-Instruct"
    assert choice.text == tgi.json()[0]["generated_text"] and "Paris" in choice.text
    assert choice.finish_reason in ("stop", "length") and choice.index == 0
    assert reply.usage.prompt_tokens == len(embedded_backend.engine.tokens.prompt_ids(PROMPT))
    echoed = client.completions.create(model="m", prompt=PROMPT, max_tokens=8, temperature=0, echo=True)
    assert echoed.choices[0].text == PROMPT + choice.text
    ids = embedded_backend.engine.tokens.prompt_ids(PROMPT)
    by_ids = client.completions.create(model="m", prompt=ids, max_tokens=8, temperature=0)
    assert by_ids.choices[0].text == choice.text


def test_several_prompts_with_n_seeded_samples_are_reproducible(client, embedded_backend):
    ask = {"model": "m", "prompt": ["Once upon a time", "My favourite food is"], "max_tokens": 12}
    first = client.completions.create(**ask, n=2, temperature=1.2, seed=7)
    again = client.completions.create(**ask, n=2, temperature=1.2, seed=7)
    assert [c.index for c in first.choices] == [0, 1, 2, 3]
    assert [c.text for c in first.choices] == [c.text for c in again.choices]
    texts = [c.text for c in first.choices]
    assert texts[0] != texts[1] or texts[2] != texts[3]  # the n samples of a prompt are not copies
    counts = [len(embedded_backend.engine.tokens.prompt_ids(p)) for p in ask["prompt"]]
    assert first.usage.prompt_tokens == sum(counts)  # each prompt counted once, not once per sample
    assert 4 <= first.usage.completion_tokens <= 4 * 12
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens


def test_a_stream_gives_each_choice_its_text_and_finish_reason(client):
    ask = {"model": "m", "prompt": [PROMPT, "Two plus two is"], "max_tokens": 8, "temperature": 0}
    whole = client.completions.create(**ask)
    texts, reasons, usage = {0: "", 1: ""}, {}, None
    for chunk in client.completions.create(**ask, stream=True, stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            if choice.finish_reason:
                reasons[choice.index] = choice.finish_reason
    assert texts == {c.index: c.text for c in whole.choices}
    assert reasons == {c.index: c.finish_reason for c in whole.choices}
    assert usage.completion_tokens == whole.usage.completion_tokens


def test_langchain_openais_llm_invokes_and_batches(server):
    llm = OpenAI(model="m", base_url=f"{server.url}/v1", api_key="unused", max_tokens=8, temperature=0)
    assert "Paris" in llm.invoke(PROMPT)
    assert [len(t) > 0 for t in llm.batch([PROMPT, "Two plus two is"])] == [True, True]
    assert "".join(llm.stream(PROMPT)) == llm.invoke(PROMPT)


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"prompt": PROMPT, "n": 2, "temperature": 0}, 400, "temperature above 0"),
        ({"prompt": PROMPT, "suffix": "end"}, 400, "suffix"),
        ({"prompt": [10**9]}, 400, "ids of the served tokenizer"),
        ({"prompt": []}, 400, "prompt is empty"),
        ({"prompt": ["fine", ""]}, 400, "prompt 1 is empty"),
        ({"prompt": ["a"] * 9, "n": 2, "temperature": 1}, 400, "over 16 choices"),
        ({"prompt": "word " * 9000}, 413, "tokens"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_fix(server, body, status, says):
    answer = httpx.post(f"{server.url}/v1/completions", json={"model": "m", **body}, timeout=60)
    assert answer.status_code == status and says in answer.json()["error"]["message"]
