"""The OpenAI and TGI protocols on a real server, through the official openai client and huggingface_hub."""

import httpx
import openai
import pytest
from huggingface_hub import InferenceClient

from chains.chat import system_prompt_or_default
from chains.messages import coerce_messages, to_chat_dicts, with_system_prompt
from tests.conftest import metric, wait_for

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
OUT = 'hfchain_tokens_total{direction="out"}'  # tokens the server generated


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def prompt_tokens(backend, messages) -> int:
    """The prompt's length as the server sends it: default system prompt, chat template, real tokenizer."""
    full = with_system_prompt(coerce_messages(messages), system_prompt_or_default(None))
    return len(backend.engine.tokens.chat_ids(to_chat_dicts(full)))


def test_create_answers_with_usage_from_the_real_tokenizer(client, embedded_backend):
    reply = client.chat.completions.create(model="any-name", messages=QUESTION, temperature=0, max_tokens=20)
    assert "Paris" in reply.choices[0].message.content and reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason == "stop" and reply.model == "SmolLM2-135M-Instruct"
    assert reply.usage.prompt_tokens == prompt_tokens(embedded_backend, QUESTION)
    assert 0 < reply.usage.completion_tokens < 20
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_max_tokens_cut_gives_finish_reason_length(client):
    reply = client.chat.completions.create(model="m", messages=QUESTION, max_tokens=3)
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 3


def test_stream_with_usage_matches_the_plain_reply(client):
    plain = client.chat.completions.create(model="m", messages=QUESTION, max_tokens=20)
    chunks = list(
        client.chat.completions.create(
            model="m", messages=QUESTION, max_tokens=20, stream=True, stream_options={"include_usage": True}
        )
    )
    assert len({c.id for c in chunks}) == 1 and chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content and len(chunks) > 4
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert reasons[-1] == "stop" and not any(reasons[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_n_samples_are_choices_seeded_one_by_one_and_streamed_interleaved(client, embedded_backend):
    ask = {"model": "m", "messages": QUESTION, "max_tokens": 12, "temperature": 1.2, "seed": 5}
    first = client.chat.completions.create(**ask, n=3)
    again = client.chat.completions.create(**ask, n=3)
    assert [c.index for c in first.choices] == [0, 1, 2]
    texts = [c.message.content for c in first.choices]
    assert texts == [c.message.content for c in again.choices] and len(set(texts)) > 1
    assert first.usage.prompt_tokens == prompt_tokens(embedded_backend, QUESTION)  # once, not per choice
    single = client.chat.completions.create(**ask)  # choice 0 samples with the request's own seed
    assert single.choices[0].message.content == texts[0]
    streamed, reasons = {0: "", 1: "", 2: ""}, {}
    for chunk in client.chat.completions.create(**ask, n=3, stream=True):
        for choice in chunk.choices:
            streamed[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                reasons[choice.index] = choice.finish_reason
    assert list(streamed.values()) == texts and set(reasons) == {0, 1, 2}


def test_errors_are_raised_as_typed_openai_exceptions(client):
    with pytest.raises(openai.BadRequestError, match="temperature above 0"):
        client.chat.completions.create(model="m", messages=QUESTION, n=2)  # greedy: n copies
    with pytest.raises(openai.BadRequestError, match="stored session"):
        client.chat.completions.create(
            model="m", messages=QUESTION, n=2, temperature=1, extra_headers={"x-session-id": "n-test"}
        )
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model="m", messages=QUESTION, temperature=9)
    with pytest.raises(openai.APIStatusError) as too_long:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "word " * 9000}])
    assert too_long.value.status_code == 413 and "shorten the input" in too_long.value.message
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("not-this-one")


def test_models_and_request_ids(client, server):
    assert [m.id for m in client.models.list()] == ["SmolLM2-135M-Instruct"]
    raw = client.chat.completions.with_raw_response.create(
        model="m", messages=QUESTION, max_tokens=2, extra_headers={"x-request-id": "trace-7"}
    )
    assert raw.headers["x-request-id"] == "trace-7" and raw.parse().id == "chatcmpl-trace-7"
    bad = httpx.post(f"{server.url}/v1/chat/completions", content=b"{", timeout=30)
    assert bad.status_code == 400 and bad.headers["x-request-id"] and bad.json()["error"]["message"]


def test_inference_client_chat_completion(server):
    hub = InferenceClient(base_url=server.url)
    reply = hub.chat_completion(QUESTION, max_tokens=20)
    assert "Paris" in reply.choices[0].message.content and reply.usage.completion_tokens > 0
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in hub.chat_completion(QUESTION, max_tokens=20, stream=True)
        if c.choices
    )
    assert streamed == reply.choices[0].message.content


def test_inference_client_text_generation(server):
    hub = InferenceClient(model=server.url)
    text = hub.text_generation("The capital of France is", max_new_tokens=12)
    assert "Paris" in text and not text.startswith("The capital")
    tokens = list(hub.text_generation("The capital of France is", max_new_tokens=12, stream=True))
    assert len(tokens) > 3 and "".join(tokens) == text
    detailed = hub.text_generation("The capital of France is", max_new_tokens=12, details=True)
    assert detailed.generated_text == text and detailed.details.generated_tokens == 12
    assert detailed.details.finish_reason == "length"
    last = list(
        hub.text_generation("The capital of France is", max_new_tokens=12, stream=True, details=True)
    )[-1]
    assert last.generated_text == text and last.details.input_length > 0


def test_inference_client_gets_tgi_typed_errors(server):
    hub = InferenceClient(model=server.url)
    from huggingface_hub.errors import ValidationError as HubValidationError

    with pytest.raises(HubValidationError, match="top_k"):
        hub.text_generation("hi", top_k=5)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/chat/completions",
            {
                "messages": [{"role": "user", "content": "Write a long essay."}],
                "max_tokens": 2000,
                "stream": True,
            },
        ),
        (
            "/",
            {
                "inputs": "A very long essay about the sea:",
                "parameters": {"max_new_tokens": 2000},
                "stream": True,
            },
        ),
    ],
)
def test_leaving_a_protocol_stream_frees_the_model(server, path, body):
    cancelled, generated = metric(server.url, "hfchain_cancellations_total"), metric(server.url, OUT)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        with http.stream("POST", path, json=body) as response:
            assert response.status_code == 200
            events = 0
            for line in response.iter_lines():
                events += line.startswith("data:")
                if events == 3:
                    break  # leave mid-stream: the connection closes with the block
        assert wait_for(lambda: metric(server.url, "hfchain_cancellations_total") == cancelled + 1)
        assert wait_for(lambda: metric(server.url, "hfchain_batch_running") == 0)
        left_after = metric(server.url, OUT) - generated  # the tokens the dropped stream generated
        assert 2 <= left_after < 1000  # stopped far short of its 2000
        quick = {"messages": QUESTION, "max_tokens": 2}
        reply = http.post("/v1/chat/completions", json=quick)
        assert reply.status_code == 200
    ran = metric(server.url, OUT) - generated - left_after
    assert ran == reply.json()["usage"]["completion_tokens"] <= 2  # the quick one ran, nothing else


ACCEPTED = 'hfchain_speculation_draft_tokens_total{outcome="accepted"}'


def test_speculation_is_a_request_field_that_changes_no_reply_and_is_counted(client, server):
    text = (
        "Marie Curie was born in Warsaw in 1867. She moved to Paris in 1891, where she studied physics. In "
        "1903 she shared the Nobel Prize in Physics, and in 1911 she won the Nobel Prize in Chemistry."
    )
    messages = [{"role": "user", "content": f"{text}\n\nRepeat the text exactly."}]

    def reply(**extra) -> str:
        done = client.chat.completions.create(
            model="m", messages=messages, temperature=0, max_tokens=32, extra_body=extra
        )
        return done.choices[0].message.content

    before = metric(server.url, ACCEPTED)
    plain, drafted = reply(speculation=False), reply(speculation=True)
    assert drafted == plain and "Warsaw" in plain
    assert metric(server.url, ACCEPTED) > before
    stream = client.chat.completions.create(
        model="m",
        messages=messages,
        temperature=0,
        max_tokens=32,
        stream=True,
        extra_body={"speculation": True},
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == plain
    with pytest.raises((openai.BadRequestError, openai.UnprocessableEntityError), match="speculation"):
        reply(speculation="sometimes")


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_tokenize_counts_what_the_chat_route_sends_and_detokenize_inverts_it(
    server, client, embedded_backend
):
    for extra in ({}, {"tools": [WEATHER_TOOL]}):
        reply = client.chat.completions.create(model="m", messages=QUESTION, max_tokens=2, **extra)
        counted = httpx.post(f"{server.url}/tokenize", json={"messages": QUESTION, **extra}).json()
        assert counted["count"] == len(counted["tokens"]) == reply.usage.prompt_tokens
        assert counted["max_model_len"] == embedded_backend.budget().context_window
    text = "Hello there, <|im_end|> is plain text here."
    raw = httpx.post(f"{server.url}/tokenize", json={"prompt": text, "return_token_strs": True}).json()
    assert (
        raw["tokens"] == embedded_backend.engine.tokens.prompt_ids(text)
        and len(raw["token_strs"]) == raw["count"]
    )
    back = httpx.post(f"{server.url}/detokenize", json={"tokens": raw["tokens"]}).json()
    assert back == {"prompt": text}


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/tokenize", {"prompt": "a", "messages": QUESTION}, "either prompt"),
        ("/tokenize", {}, "either prompt"),
        ("/detokenize", {"tokens": [-1, 5]}, "ids of the served tokenizer"),
        ("/detokenize", {"tokens": [10**9]}, "ids of the served tokenizer"),
    ],
)
def test_tokenizer_routes_refuse_bad_input_saying_why(server, path, body, says):
    answer = httpx.post(f"{server.url}{path}", json=body)
    assert answer.status_code == 422 and says in answer.text
