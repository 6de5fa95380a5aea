"""Log probabilities on a real server: chat completions (openai, streamed and not; ChatOpenAI), legacy
completions (with echo: the prompt's own, as lm-eval-harness asks), constrained replies, and 400s."""

from __future__ import annotations

import math

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI

pytestmark = pytest.mark.server

ASK = [{"role": "user", "content": "Name three colours."}]
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_chat_logprobs_spell_the_reply_and_list_the_alternatives(client):
    reply = client.chat.completions.create(
        model="m", messages=ASK, max_tokens=12, temperature=0, logprobs=True, top_logprobs=3
    )
    choice = reply.choices[0]
    entries = choice.logprobs.content
    assert len(entries) == reply.usage.completion_tokens - (choice.finish_reason == "stop")  # EOS: no entry
    assert "".join(e.token for e in entries) == choice.message.content
    for entry in entries:
        assert len(entry.top_logprobs) == 3 and entry.token == entry.top_logprobs[0].token  # greedy
        assert entry.logprob <= 0 and sum(math.exp(t.logprob) for t in entry.top_logprobs) <= 1 + 1e-9
        assert bytes(entry.bytes).decode() == entry.token
    plain = client.chat.completions.create(model="m", messages=ASK, max_tokens=12, temperature=0)
    assert plain.choices[0].message.content == choice.message.content and plain.choices[0].logprobs is None


def test_streamed_chat_logprobs_are_the_same_as_the_whole_replys(client):
    ask = {"model": "m", "messages": ASK, "max_tokens": 12, "temperature": 0.8, "seed": 5, "logprobs": True}
    whole = client.chat.completions.create(**ask, top_logprobs=2)
    text, entries = "", []
    for chunk in client.chat.completions.create(**ask, top_logprobs=2, stream=True):
        for choice in chunk.choices:
            text += choice.delta.content or ""
            entries += choice.logprobs.content if choice.logprobs else []
    assert text == whole.choices[0].message.content
    assert [(e.token, round(e.logprob, 6)) for e in entries] == [
        (e.token, round(e.logprob, 6)) for e in whole.choices[0].logprobs.content
    ]


def test_n_choices_each_get_their_own_logprobs(client):
    reply = client.chat.completions.create(
        model="m", messages=ASK, max_tokens=8, temperature=1.0, seed=3, n=2, logprobs=True
    )
    for choice in reply.choices:
        assert "".join(e.token for e in choice.logprobs.content) == choice.message.content


def test_a_constrained_reply_reads_its_logprobs_after_the_grammar(client):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    reply = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Where is the Eiffel Tower? Answer in JSON."}],
        max_tokens=24,
        logprobs=True,
        top_logprobs=20,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}},
    )
    first = reply.choices[0].logprobs.content[0]
    assert reply.choices[0].message.content.startswith("{")
    # the mask leaves only what the schema allows: the listed alternatives hold all the probability
    assert sum(math.exp(t.logprob) for t in first.top_logprobs) == pytest.approx(1.0, abs=1e-6)


def test_chat_openai_reports_logprobs_in_response_metadata(server):
    llm = ChatOpenAI(
        model="m", base_url=f"{server.url}/v1", api_key="unused", max_tokens=8, temperature=0, logprobs=True
    )
    message = llm.invoke("Say hello.")
    content = message.response_metadata["logprobs"]["content"]
    assert "".join(e["token"] for e in content) == message.content


def test_completion_logprobs_in_the_legacy_shape(client):
    reply = client.completions.create(model="m", prompt=PROMPT, max_tokens=6, temperature=0, logprobs=2)
    choice, scores = reply.choices[0], reply.choices[0].logprobs
    assert "".join(scores.tokens) == choice.text
    assert len(scores.tokens) == reply.usage.completion_tokens - (choice.finish_reason == "stop")
    assert scores.text_offset == [len("".join(scores.tokens[:i])) for i in range(len(scores.tokens))]
    for token, logprob, top in zip(scores.tokens, scores.token_logprobs, scores.top_logprobs, strict=True):
        assert top[token] == logprob and len(top) <= 3 and logprob == max(top.values())


def test_echo_with_logprobs_scores_the_prompt_as_generation_scored_its_reply(client):
    generated = client.completions.create(model="m", prompt=PROMPT, max_tokens=1, temperature=0, logprobs=0)
    token = generated.choices[0].logprobs.tokens[0]
    scored = client.completions.create(model="m", prompt=PROMPT + token, max_tokens=0, echo=True, logprobs=1)
    choice = scored.choices[0]
    assert choice.text == PROMPT + token and scored.usage.completion_tokens == 0
    assert choice.logprobs.token_logprobs[0] is None and choice.logprobs.top_logprobs[0] is None
    assert choice.logprobs.tokens[-1] == token and "".join(choice.logprobs.tokens) == choice.text
    expected = generated.choices[0].logprobs.token_logprobs[0]
    assert choice.logprobs.token_logprobs[-1] == pytest.approx(expected, abs=1e-3)
    echoed = client.completions.create(
        model="m", prompt=PROMPT, max_tokens=3, temperature=0, echo=True, logprobs=0, stream=True
    )
    text, tokens = "", []
    for chunk in echoed:
        for c in chunk.choices:
            text += c.text
            tokens += c.logprobs.tokens if c.logprobs else []
    assert text.startswith(PROMPT) and "".join(tokens) == text


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/v1/chat/completions", {"messages": ASK, "top_logprobs": 2}, "top_logprobs needs logprobs"),
        ("/v1/chat/completions", {"messages": ASK, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ("/v1/completions", {"prompt": PROMPT, "logprobs": 21}, "logprobs"),
        ("/v1/completions", {"prompt": PROMPT, "max_tokens": 0}, "echo"),
    ],
)
def test_bad_logprobs_requests_are_400s_that_say_why(server, path, body, says):
    answer = httpx.post(f"{server.url}{path}", json=body, timeout=60)
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]["message"]
