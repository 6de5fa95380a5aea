"""HFCHAIN_RUNTIME=onnx on the embedded model: exported once into the cache, run under hfchain's engine
with the torch runtime's features (batching, sampling, stops, cancellation, grammars, prefix cache), and
its fp32 build agrees with torch."""

import json
import logging
from pathlib import Path

import pytest

from chains import build_backend, load_settings
from chains.backends.engine import Completion, GenerationParams
from chains.backends.onnx.export import ExportError, ensure_exported
from chains.backends.pool import BLOCK
from chains.classify.methods import label_logprobs
from chains.tools.grammar import json_grammar
from tests.conftest import wait_for
from tests.model.test_prefix_cache import without_prefix_cache

QUESTIONS = [
    "What is the capital of France?",
    "Name three fruits.",
    "Write a haiku about rain.",
    "How do I boil an egg?",
]


@pytest.fixture(scope="module")
def onnx_backend():
    """The embedded model on the ONNX runtime (int4), exported into the cache by its first load."""
    backend = build_backend(load_settings(backend="local", model=None, runtime="onnx"))
    backend.engine.load()
    yield backend
    backend.stop()


def chat_prompt(model, question: str) -> list[int]:
    """The chat-formatted prompt's token ids."""
    text = model.tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
    )
    return model.tokenizer(text).input_ids


def test_the_export_is_kept_in_the_cache_and_reused(onnx_backend, caplog):
    model = onnx_backend.engine
    folder = model.model.folder
    assert (folder / "model.onnx").is_file() and folder.parent.name == "onnx"
    assert onnx_backend.runtime == "onnx-int4"
    with caplog.at_level(logging.INFO, logger="chains.backends.onnx.export"):
        again = ensure_exported(model.onnx["cache_dir"], str(model.model.source), "int4", "cpu")
    assert again == folder and "from the cache" in caplog.text
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no scratch folder left


def test_replies_do_not_depend_on_what_else_is_in_the_batch(onnx_backend, monkeypatch):
    model = onnx_backend.engine
    prompts = [chat_prompt(model, q) for q in QUESTIONS]
    params = GenerationParams(max_new_tokens=24)
    alone = [model.generate([p], params)[0].text for p in prompts]
    together = [c.text for c in model.generate(prompts, params)]
    assert together == alone
    # rows joining a running batch and leaving it at different lengths
    sizes = []
    monkeypatch.setattr(model.engine.observer, "batch", sizes.append)  # rows in each decoding step
    long = model.engine.submit(prompts[0], GenerationParams(max_new_tokens=40))
    events = long.events()
    first = next(events)
    later = [
        model.engine.submit(p, GenerationParams(max_new_tokens=8 * (i + 1)))
        for i, p in enumerate(prompts[1:])
    ]
    replies = [[*j.events()][-1] for j in later]
    rest = [first, *events]
    assert isinstance(rest[-1], Completion) and sizes[0] == 1 and max(sizes) == 4  # they joined it
    expected = [
        model.generate([p], GenerationParams(max_new_tokens=8 * (i + 1)))[0]
        for i, p in enumerate(prompts[1:])
    ]
    assert [r.text for r in replies] == [e.text for e in expected]
    assert rest[-1].text == model.generate([prompts[0]], GenerationParams(max_new_tokens=40))[0].text


def test_seeded_sampling_is_reproducible_alone_and_batched(onnx_backend):
    model = onnx_backend.engine
    prompts = [chat_prompt(model, q) for q in QUESTIONS[:3]]
    params = GenerationParams(max_new_tokens=20, temperature=0.9, top_p=0.95, seed=7)
    alone = [model.generate([p], params)[0].text for p in prompts]
    assert [c.text for c in model.generate(prompts, params)] == alone
    other = GenerationParams(max_new_tokens=20, temperature=0.9, top_p=0.95, seed=8)
    assert model.generate([prompts[0]], other)[0].text != alone[0]


def test_stops_and_limits_end_rows_with_their_reason(onnx_backend):
    model = onnx_backend.engine
    prompt = chat_prompt(model, QUESTIONS[0])
    full = model.generate([prompt], GenerationParams(max_new_tokens=24))[0]
    assert "Paris" in full.text
    stopped = model.generate([prompt], GenerationParams(max_new_tokens=24, stop=("Paris",)))[0]
    assert stopped.finish_reason == "stop" and "Paris" not in stopped.text
    assert full.text.startswith(stopped.text)
    short = model.generate([prompt], GenerationParams(max_new_tokens=3))[0]
    assert short.finish_reason == "length" and short.completion_tokens == 3


def test_a_closed_stream_stops_its_row(onnx_backend):
    model = onnx_backend.engine
    stream = model.stream(
        chat_prompt(model, "Tell me a very long story."), GenerationParams(max_new_tokens=400)
    )
    pieces = [next(stream) for _ in range(3)]
    stream.close()
    rest = list(stream)
    assert pieces and stream.completion.finish_reason == "cancelled"
    assert stream.completion.completion_tokens < 400 and len(rest) < 400
    assert model.generate([chat_prompt(model, QUESTIONS[1])], GenerationParams(max_new_tokens=4))[0]
    assert wait_for(lambda: model.engine.running == 0)  # the closed row left the batch


def test_a_grammar_constrains_the_reply(onnx_backend):
    model = onnx_backend.engine
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    prompt = chat_prompt(model, "Give a person as JSON with a name and an age.")
    params = GenerationParams(max_new_tokens=48, grammar=json_grammar(schema))
    reply = model.generate([prompt], params)[0]
    value = json.loads(reply.text)
    assert set(value) == {"name", "age"} and isinstance(value["age"], int)


def test_constrained_rows_close_within_tight_limits_on_int4(onnx_backend):
    """int4 cut 40 % of constrained replies before they closed: the budget guard runs on this decoder too."""
    model = onnx_backend.engine
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "note": {"type": "string"}},
              "required": ["city", "note"]}  # fmt: skip
    grammar = json_grammar(schema)
    minimum = model.engine.grammars.constraint(grammar).minimum
    prompts = [
        chat_prompt(model, f"Describe {city} at length, as JSON.") for city in ("Paris", "Lima", "Oslo")
    ]
    replies = model.generate(prompts, GenerationParams(max_new_tokens=minimum + 4, grammar=grammar))
    for reply in replies:
        assert reply.finish_reason == "stop" and reply.completion_tokens <= minimum + 4
        assert set(json.loads(reply.text)) == {"city", "note"}


def test_the_prefix_cache_reuses_a_prompt_and_changes_no_reply(onnx_backend):
    model = onnx_backend.engine
    prompt = chat_prompt(model, "Describe the sea in two sentences. " * 4)
    params = GenerationParams(max_new_tokens=16)
    first = model.generate([prompt], params)[0]
    again = model.generate([prompt], params)[0]
    # whole blocks, at least two tokens computed: never a one-row matmul
    assert again.cached_tokens == (len(prompt) - 2) // BLOCK * BLOCK
    assert again.text == first.text
    follow = prompt + model.tokenizer(first.text).input_ids + chat_prompt(model, "And the sky?")[1:]
    warm = model.generate([follow], params)[0]
    assert warm.cached_tokens == len(prompt) // BLOCK * BLOCK  # the previous prompt's whole blocks
    with without_prefix_cache(onnx_backend):
        cold = model.generate([follow], params)[0]
    assert cold.cached_tokens == 0 and cold.text == warm.text


def test_label_scoring_runs_on_the_onnx_graph(onnx_backend):
    model = onnx_backend.engine
    prefix = model.tokenizer("Review: a wonderful, moving film.\nSentiment:").input_ids
    labels = [model.tokenizer(" positive").input_ids, model.tokenizer(" negative").input_ids]
    scores = model.run(label_logprobs, prefix, labels)
    assert len(scores) == 2 and all(s < 0 for s in scores)


def test_a_single_row_decodes_next_to_a_phantom_row_only_when_batch_invariant(onnx_backend):
    model = onnx_backend.engine
    assert model.model.min_rows == 2  # int4 with int8 activations: the one-row kernel differs
    decoder = model.model.new_decoder(model.tokenizer.pad_token_id, None)

    class Row:
        temperature, top_p, generator, constraint = 0.0, 1.0, None, None

    prompt = chat_prompt(model, QUESTIONS[0])
    decoder.join([Row()], [prompt], [Row()])
    assert decoder.phantom and decoder.past[0].shape[0] == 2
    decoder.step([Row()])
    assert len(decoder) == 1 and decoder.lens.tolist() == [len(prompt) + 1]
    decoder.join([Row()], [prompt[:20]], [Row()])
    assert not decoder.phantom and decoder.past[0].shape[0] == 2
    decoder.keep([False, True])
    assert decoder.phantom and decoder.past[0].shape[2] == 20
    decoder.keep([False])
    assert decoder.past is None and not decoder.phantom


def test_an_architecture_the_builder_cannot_export_fails_naming_the_fix(tmp_path):
    folder = tmp_path / "odd-model"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"model_type": "bert", "architectures": ["BertForMaskedLM"]})
    )
    with pytest.raises(ExportError, match="HFCHAIN_RUNTIME=torch") as failure:
        ensure_exported(tmp_path / "cache", str(folder), "int4", "cpu")
    assert "is not currently supported" in str(failure.value)  # the builder's own reason, passed on
    assert not [p for p in (tmp_path / "cache" / "onnx").iterdir()]  # nothing half-written stays


def test_fp32_agrees_with_the_torch_model(embedded_backend):
    backend = build_backend(
        load_settings(backend="local", model=None, runtime="onnx", onnx_precision="fp32", kv_cache_bytes=0)
    )
    backend.engine.load()
    try:
        onnx, torch_model = backend.engine, embedded_backend.engine
        assert onnx.model.min_rows == 1  # fp32 needs no phantom row
        prompts = [chat_prompt(torch_model, q) for q in QUESTIONS]
        params = GenerationParams(max_new_tokens=24)
        with without_prefix_cache(embedded_backend):
            expected = [c.text for c in torch_model.generate(prompts, params)]
        assert [c.text for c in onnx.generate(prompts, params)] == expected
        prefix = torch_model.tokenizer("Review: a dull film.\nSentiment:").input_ids
        labels = [torch_model.tokenizer(w).input_ids for w in (" positive", " negative", " mixed feelings")]
        mine, theirs = (
            onnx.run(label_logprobs, prefix, labels),
            torch_model.run(label_logprobs, prefix, labels),
        )
        assert mine == pytest.approx(theirs, abs=1e-3)
    finally:
        backend.stop()
    assert Path(backend.engine.model.folder).is_dir()


def test_auto_serves_onnx_fp32_with_torchs_greedy_tokens(embedded_backend):
    backend = build_backend(load_settings(backend="local", model=None))  # the default: auto
    assert backend.runtime == "auto"
    backend.engine.load()
    try:
        assert backend.runtime == "onnx-fp32"
        prompts = [chat_prompt(embedded_backend.engine, q) for q in [*QUESTIONS, "Tell me a story.", "Why?"]]
        params = GenerationParams(max_new_tokens=32)
        expected = [c.text for c in embedded_backend.engine.generate(prompts, params)]
        assert [c.text for c in backend.engine.generate(prompts, params)] == expected
    finally:
        backend.stop()


def test_auto_keeps_torch_saying_why_when_onnx_does_not_apply(monkeypatch, caplog):
    from chains.backends.model import LocalModel

    def no_export(*_):
        raise RuntimeError("the builder does not support this architecture\nmore lines")

    monkeypatch.setattr(LocalModel, "_onnx_session", no_export)
    backend = build_backend(load_settings(backend="local", model=None))
    with caplog.at_level("INFO"):
        backend.engine.load()
    try:
        assert backend.runtime == "torch"
        assert (
            "HFCHAIN_RUNTIME=auto: torch, because its ONNX export failed (the builder does not" in caplog.text
        )
    finally:
        backend.stop()
