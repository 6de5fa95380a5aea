"""Log probabilities from the engine on the embedded model (torch): one entry per reply token, read from
the distribution the token was drawn from (after a grammar's mask, the temperature and top_p), the same
with and without drafts, equal to the prompt's own scoring; and n samples of one prompt prefilled once."""

import asyncio
import dataclasses
import math
import uuid

import pytest

from chains.backends.engine import GenerationParams, Observer
from chains.tools.grammar import json_grammar
from tests.model.test_onnx_runtime import chat_prompt

pytestmark = pytest.mark.model

DOCUMENT = (
    "Marie Curie was born in Warsaw in 1867. She moved to Paris in 1891, where she studied physics and "
    "mathematics. In 1903 she shared the Nobel Prize in Physics."
)


def test_each_reply_token_has_an_entry_whose_text_makes_the_reply(embedded_backend):
    model = embedded_backend.engine
    params = GenerationParams(max_new_tokens=16, logprobs=5)
    reply = model.generate([chat_prompt(model, "Name three colours.")], params)[0]
    assert len(reply.logprobs) == reply.completion_tokens  # no EOS among them: the limit ended it
    assert "".join(e["token"] for e in reply.logprobs) == reply.text
    for entry in reply.logprobs:
        top = entry["top_logprobs"]
        assert len(top) == 5 and [t["logprob"] for t in top] == sorted(
            (t["logprob"] for t in top), reverse=True
        )
        assert entry["logprob"] == top[0]["logprob"] and entry["token"] == top[0]["token"]  # greedy: argmax
        assert sum(math.exp(t["logprob"]) for t in top) <= 1 + 1e-9
        assert bytes(entry["bytes"]).decode("utf-8") == entry["token"]


def test_sampled_entries_come_from_the_nucleus_the_token_was_drawn_from(embedded_backend):
    model = embedded_backend.engine
    ask = chat_prompt(model, "Write a sentence about the sea.")
    params = GenerationParams(max_new_tokens=20, temperature=0.9, top_p=0.5, seed=11, logprobs=20)
    reply = model.generate([ask], params)[0]
    plain = model.generate([ask], dataclasses.replace(params, logprobs=None))[0]
    assert reply.text == plain.text  # asking for them changes nothing that is sampled
    for entry in reply.logprobs:
        top = entry["top_logprobs"]
        assert entry["token"] in [t["token"] for t in top]
        mass = sum(math.exp(t["logprob"]) for t in top)
        assert mass == pytest.approx(1.0, abs=1e-6) or len(top) == 20  # the nucleus, renormalised
        assert all(t["logprob"] > -9999 for t in top)  # nothing outside the nucleus is listed


def test_a_grammars_mask_is_applied_before_the_distribution_is_read(embedded_backend):
    model = embedded_backend.engine
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    params = GenerationParams(max_new_tokens=24, grammar=json_grammar(schema), logprobs=20)
    reply = model.generate([chat_prompt(model, "Where was Marie Curie born? Answer in JSON.")], params)[0]
    first = reply.logprobs[0]
    assert reply.text.startswith("{") and first["token"].lstrip().startswith("{")
    assert all(t["token"].lstrip().startswith("{") or not t["token"].strip() for t in first["top_logprobs"])
    assert sum(math.exp(t["logprob"]) for t in first["top_logprobs"]) == pytest.approx(1.0, abs=1e-6)


def test_drafted_tokens_get_the_same_entries_as_undrafted_ones(embedded_backend):
    model = embedded_backend.engine
    ask = chat_prompt(model, f"{DOCUMENT}\n\nRepeat the text exactly.")
    params = GenerationParams(max_new_tokens=40, logprobs=2)
    drafted = model.generate([ask], dataclasses.replace(params, speculation=True))[0]
    plain = model.generate([ask], dataclasses.replace(params, speculation=False))[0]
    assert drafted.text == plain.text and len(drafted.logprobs) == len(plain.logprobs)
    for a, b in zip(drafted.logprobs, plain.logprobs, strict=True):
        assert a["token"] == b["token"] and a["logprob"] == pytest.approx(b["logprob"], abs=1e-4)


def test_a_reply_tokens_logprob_equals_the_prompt_scoring_of_it(embedded_backend):
    model = embedded_backend.engine
    ids = model.tokens.prompt_ids("The capital of France is")
    reply = model.generate([ids], GenerationParams(max_new_tokens=3, logprobs=0))[0]
    scored = asyncio.run(model.aprompt_logprobs(ids + model.tokens.text_ids(reply.text), 3))
    assert scored[0]["logprob"] is None and scored[0]["top_logprobs"] is None
    assert len(scored) == len(ids) + reply.completion_tokens
    for mine, theirs in zip(reply.logprobs, scored[len(ids) :], strict=True):
        assert mine["token"] == theirs["token"]
        assert mine["logprob"] == pytest.approx(theirs["logprob"], abs=1e-3)


def test_streamed_pieces_carry_the_entries_of_their_tokens_and_a_stop_cuts_its_own(embedded_backend):
    model = embedded_backend.engine
    ask = chat_prompt(model, "Write a sentence about the sea.")
    whole = model.generate([ask], GenerationParams(max_new_tokens=30, logprobs=1))[0]
    words = whole.text.split()
    stop = " " + words[len(words) // 2]  # a stop sequence in the middle of the reply
    stream = model.stream(ask, GenerationParams(max_new_tokens=30, logprobs=1, stop=(stop,)))
    pieces = list(stream)
    entries = [e for piece in pieces for e in piece.logprobs]
    assert "".join(pieces) == stream.completion.text and stop not in stream.completion.text
    assert whole.text.startswith(stream.completion.text) and stream.completion.finish_reason == "stop"
    assert "".join(e["token"] for e in entries).startswith(stream.completion.text)
    assert list(stream.completion.logprobs) == entries


class Prefills(Observer):
    """Prompt tokens each joining row reused from the pool and computed."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int]] = []

    def prefill(self, reused: int, computed: int) -> None:
        self.rows.append((reused, computed))


def test_n_samples_of_one_prompt_compute_it_once(embedded_backend):
    model, core = embedded_backend.engine, embedded_backend.engine.engine
    ask = chat_prompt(model, f"({uuid.uuid4()}) {DOCUMENT} {DOCUMENT}\n\nWhat is this about?")  # not cached
    params = [GenerationParams(max_new_tokens=6, temperature=1.0, seed=seed) for seed in range(4)]
    saved, core.observer = core.observer, Prefills()
    try:
        jobs = [core.submit(ask, p) for p in params]
        together = [[e for e in job.events()][-1].text for job in jobs]
        rows = core.observer.rows
    finally:
        core.observer = saved
    assert len(rows) == 4 and all(reused + computed == len(ask) for reused, computed in rows)
    assert rows[0][1] > 64  # the first computes the prompt (after the system prompt's cached blocks)
    assert all(computed <= 16 for _, computed in rows[1:])  # the others only its last partial block
    assert together == [model.generate([ask], p)[0].text for p in params]  # the same samples as alone
