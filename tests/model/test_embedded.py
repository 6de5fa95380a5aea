"""The embedded SmolLM2-135M through the chains, greedy unless a test says otherwise."""

import asyncio
import time
from pathlib import Path

from chains import build_chat_chain, build_generate_chain
from chains.backends.embedded import ensure_converted
from chains.backends.model import GenerationParams
from chains.settings import get_settings

QUESTION = {"messages": [{"role": "user", "content": "What is the capital of France?"}]}
GREEDY = {"configurable": {"temperature": 0, "max_new_tokens": 24}}


def test_chat_answers_paris(embedded_backend):
    reply = build_chat_chain(embedded_backend).invoke(QUESTION, config=GREEDY)
    assert "Paris" in reply.content
    assert reply.usage_metadata["input_tokens"] > 10 and reply.usage_metadata["output_tokens"] > 0


def test_chat_async_path_works(embedded_backend):
    chain = build_chat_chain(embedded_backend)

    async def run():
        reply = await chain.ainvoke(QUESTION, config=GREEDY)
        chunks = [chunk.content async for chunk in chain.astream(QUESTION, config=GREEDY)]
        return reply, chunks

    reply, chunks = asyncio.run(run())
    assert "Paris" in reply.content and "".join(chunks) == reply.content


def test_stream_yields_several_chunks_matching_invoke(embedded_backend):
    chain = build_generate_chain(embedded_backend)
    prompt = {"prompt": "Here is a short story about a cat:"}
    chunks = list(chain.stream(prompt, config=GREEDY))
    assert len([c for c in chunks if c]) >= 5
    assert "".join(chunks) == chain.invoke(prompt, config=GREEDY)


def test_generate_returns_only_the_completion(embedded_backend):
    prompt = "The capital of France is"
    text = build_generate_chain(embedded_backend).invoke({"prompt": prompt}, config=GREEDY)
    assert text and not text.startswith(prompt) and "Paris" in text


def test_batch_returns_one_answer_per_input(embedded_backend):
    chain = build_chat_chain(embedded_backend)
    questions = ["What is the capital of France?", "Name a colour.", "What is 2 + 2?"]
    replies = chain.batch([{"messages": [{"role": "user", "content": q}]} for q in questions], config=GREEDY)
    assert len(replies) == 3 and all(r.content.strip() for r in replies)
    assert "Paris" in replies[0].content


def test_multi_token_stop_in_invoke_and_stream(embedded_backend):
    chain = build_chat_chain(embedded_backend)
    full = chain.invoke(QUESTION, config=GREEDY).content
    assert "of France" in full
    config = {"configurable": {**GREEDY["configurable"], "stop": ["of France"]}}
    expected = full[: full.index("of France")]
    assert chain.invoke(QUESTION, config=config).content == expected
    chunks = [c.content for c in chain.stream(QUESTION, config=config)]
    assert "".join(chunks) == expected and not any("France" in c for c in chunks)


def test_seed_makes_sampling_reproducible(embedded_backend):
    chain = build_generate_chain(embedded_backend)
    config = {"configurable": {"temperature": 1.0, "top_p": 0.95, "seed": 7, "max_new_tokens": 16}}
    first = chain.invoke({"prompt": "Once upon a time"}, config=config)
    assert chain.invoke({"prompt": "Once upon a time"}, config=config) == first


def test_closing_a_stream_frees_the_model(embedded_backend):
    engine = embedded_backend.engine
    prompt = engine.tokens.prompt_ids("Write a very long essay about the sea.")
    stream = engine.stream(prompt, GenerationParams(max_new_tokens=2000))
    assert next(stream)
    stream.close()  # what a client disconnect does
    for _ in stream:  # the engine answers the cancelled job with its Completion at the next step
        pass
    cancelled = stream.completion
    assert cancelled.finish_reason == "cancelled"  # cut short by close(), not by length or EOS
    assert cancelled.completion_tokens < 1000  # far short of its 2000 tokens
    (quick,) = engine.generate([prompt], GenerationParams(max_new_tokens=1))  # queued behind it
    assert quick.finish_reason in {"length", "stop"} and quick.completion_tokens == 1
    for _ in range(300):  # the model thread updates its batch just after the last step: poll for it
        if engine.engine.running == engine.engine.queued == 0:
            break
        time.sleep(0.1)
    assert engine.engine.running == engine.engine.queued == 0  # nothing left holding the model


def test_converted_cache_is_reused(embedded_backend):
    folder = ensure_converted(get_settings().cache_dir)
    assert (Path(folder) / "config.json").is_file() and (Path(folder) / "model.safetensors").is_file()
    assert not list(Path(folder).parent.glob(".SmolLM2-135M-Instruct-*"))  # no staging left behind
    assert embedded_backend.engine.context_window == 8192
