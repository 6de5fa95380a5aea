"""Speculative decoding (prompt lookup) on the embedded model: the same replies as without drafts, greedy
and seeded, on both runtimes and in batches, with stops, limits, grammars, cancellation and the prefix
cache still working, and drafts actually accepted on replies that copy."""

import dataclasses
import json
from contextlib import contextmanager

import pytest

from chains import build_backend, load_settings
from chains.backends.engine import GenerationParams, Observer
from chains.tools.grammar import json_grammar
from tests.conftest import wait_for
from tests.model.test_onnx_runtime import chat_prompt

pytestmark = pytest.mark.model

DOCUMENTS = [
    "The Amazon rainforest covers much of the Amazon basin of South America. The basin encompasses seven "
    "million square kilometres, of which five and a half million are covered by the rainforest. The "
    "majority of the forest is in Brazil, with 60%, followed by Peru with 13% and Colombia with 10%.",
    "To install the service, run make install. To start it, run make serve; it listens on port 8000. "
    "The tests run with make test. Settings are read from environment variables starting with HFCHAIN_.",
    "Marie Curie was born in Warsaw in 1867. She moved to Paris in 1891, where she studied physics and "
    "mathematics. In 1903 she shared the Nobel Prize in Physics, and in 1911 she won the Nobel Prize in "
    "Chemistry.",
]
ASKS = ["Repeat the text exactly.", "Summarize the text in two sentences.", "What numbers does it give?"]
OTHERS = ["Write a haiku about rain.", "Tell me a story about a dragon."]


def prompts(model) -> list[list[int]]:
    """Chat prompts over the documents (replies that copy), and two that copy little."""
    asks = [f"{doc}\n\n{ask}" for doc in DOCUMENTS for ask in ASKS]
    return [chat_prompt(model, text) for text in asks + OTHERS]


class Drafts(Observer):
    """Counts what the engine reports about drafts."""

    def __init__(self) -> None:
        self.drafted = self.accepted = 0

    def drafts(self, drafted: int, accepted: int) -> None:
        self.drafted, self.accepted = self.drafted + drafted, self.accepted + accepted


@contextmanager
def counting(backend):
    """The engine's draft counts for the duration."""
    core = backend.engine.engine
    saved, core.observer = core.observer, Drafts()
    try:
        yield core.observer
    finally:
        core.observer = saved


def replies(model, items, params, speculation: bool) -> list[str]:
    """Each prompt generated alone (one row: where ONNX drafts too)."""
    params = dataclasses.replace(params, speculation=speculation)
    return [model.generate([p], params)[0].text for p in items]


@pytest.fixture(scope="module")
def fp32_backend():
    """The default runtime (auto: ONNX fp32), loaded for this module."""
    backend = build_backend(load_settings(backend="local", model=None))
    backend.engine.load()
    assert backend.runtime == "onnx-fp32"
    yield backend
    backend.stop()


@pytest.fixture(params=["torch", "onnx-fp32"])
def backend(request, embedded_backend):
    """Each runtime that drafts."""
    return embedded_backend if request.param == "torch" else request.getfixturevalue("fp32_backend")


def test_greedy_replies_are_the_same_with_drafts_and_drafts_are_accepted(backend):
    model = backend.engine
    items, params = prompts(model), GenerationParams(max_new_tokens=48)
    plain = replies(model, items, params, speculation=False)
    with counting(backend) as drafts:
        drafted = replies(model, items, params, speculation=True)
    assert drafted == plain
    assert drafts.accepted > 100 and drafts.drafted > drafts.accepted  # copying pays; some drafts fail


def test_seeded_sampling_is_the_same_with_drafts_alone_and_batched(backend):
    model = backend.engine
    items = prompts(model)[:6]
    params = GenerationParams(max_new_tokens=32, temperature=0.8, top_p=0.95, seed=7)
    plain = replies(model, items, params, speculation=False)
    with counting(backend) as drafts:
        assert replies(model, items, params, speculation=True) == plain
    assert drafts.accepted > 0
    batched = model.generate(items, dataclasses.replace(params, speculation=True))  # 6 rows: no drafts
    assert [c.text for c in batched] == plain
    other = GenerationParams(max_new_tokens=32, temperature=0.8, top_p=0.95, seed=8)
    assert replies(model, items[:2], other, speculation=True) != plain[:2]


def test_rows_drafting_together_reply_as_each_does_alone(embedded_backend):
    model = embedded_backend.engine
    items = prompts(model)[:4]  # ragged drafts in one torch batch (HFCHAIN_SPECULATION_MAX_BATCH=4)
    params = GenerationParams(max_new_tokens=40)
    alone = replies(model, items, params, speculation=False)
    core = model.engine
    core.speculation_max_batch = 4
    try:
        with counting(embedded_backend) as drafts:
            together = model.generate(items, dataclasses.replace(params, speculation=True))
    finally:
        core.speculation_max_batch = 1
    assert [c.text for c in together] == alone and drafts.accepted > 0


def test_stops_and_limits_end_drafting_rows_exactly(backend):
    model = backend.engine
    prompt = prompts(model)[0]  # repeats the Amazon text
    params = GenerationParams(max_new_tokens=40, speculation=True)
    full = model.generate([prompt], params)[0]
    assert "half million" in full.text
    stopped = model.generate([prompt], dataclasses.replace(params, stop=("half million",)))[0]
    assert stopped.finish_reason == "stop" and full.text.startswith(stopped.text)
    assert "half million" not in stopped.text
    for limit in (1, 5, 13):
        short = model.generate([prompt], dataclasses.replace(params, max_new_tokens=limit))[0]
        assert short.finish_reason == "length" and short.completion_tokens == limit
        assert full.text.startswith(short.text)


def test_a_constrained_row_next_to_drafting_rows_keeps_its_grammar(embedded_backend):
    model = embedded_backend.engine
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    constrained = GenerationParams(max_new_tokens=48, grammar=json_grammar(schema), speculation=True)
    person = chat_prompt(model, "Give a person as JSON with a name and an age.")
    alone = model.generate([person], constrained)[0].text
    core, free = model.engine, GenerationParams(max_new_tokens=48, speculation=True)
    jobs = [core.submit(p, free) for p in prompts(model)[:2]] + [core.submit(person, constrained)]
    texts = [list(job.events())[-1].text for job in jobs]
    assert texts[2] == alone and set(json.loads(alone)) == {"name", "age"}


def test_a_closed_stream_stops_a_drafting_row(backend):
    model = backend.engine
    stream = model.stream(prompts(model)[0], GenerationParams(max_new_tokens=300, speculation=True))
    pieces = [next(stream) for _ in range(3)]
    stream.close()
    list(stream)
    assert pieces and stream.completion.finish_reason == "cancelled"
    assert stream.completion.completion_tokens < 300
    assert wait_for(lambda: model.engine.running == 0)


def test_the_prefix_cache_serves_drafting_rows_and_gets_every_block_back(backend):
    model = backend.engine
    prompt = prompts(model)[1]
    params = GenerationParams(max_new_tokens=40, speculation=True)
    first = model.generate([prompt], params)[0]
    again = model.generate([prompt], params)[0]
    assert again.cached_tokens > 0 and again.text == first.text
    core = model.engine
    core.call(lambda: None).result()
    core.pool.check()
    assert core.pool.used == 0


def test_the_server_setting_turns_drafting_off_and_the_knob_back_on(embedded_backend):
    model, core = embedded_backend.engine, embedded_backend.engine.engine
    prompt = prompts(model)[0]
    core.speculation = False
    try:
        with counting(embedded_backend) as drafts:
            model.generate([prompt], GenerationParams(max_new_tokens=24))
        assert drafts.drafted == 0
        with counting(embedded_backend) as drafts:
            model.generate([prompt], GenerationParams(max_new_tokens=24, speculation=True))
        assert drafts.accepted > 0
    finally:
        core.speculation = True
