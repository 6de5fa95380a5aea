"""The `hfchain` console script on the embedded model: generate and interactive chat."""

import json
import os
import subprocess
import sys
from pathlib import Path

HFCHAIN = str(Path(sys.executable).parent / "hfchain")


def run(args: list[str], stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([HFCHAIN, *args], input=stdin, capture_output=True, text=True, timeout=180)


def test_generate_streams_the_completion(embedded_backend):
    result = run(["generate", "The capital of France is", "--max-new-tokens", "8", "--temperature", "0"])
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout and "The capital of France is" not in result.stdout


def test_chat_keeps_the_conversation_until_exit(embedded_backend):
    result = run(["chat", "--max-new-tokens", "24"], stdin="What is the capital of France?\n/exit\n")
    assert result.returncode == 0, result.stderr
    assert "you> " in result.stdout and "Paris" in result.stdout


def test_classify_a_text_and_a_file(tmp_path):
    result = run(["classify", "--labels", "positive,negative", "I loved this wonderful film"])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["label"] == "positive"
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        '{"text": "A wonderful, moving film", "id": 1}\n{"text": "Dreadful and boring", "id": 2}\n'
    )
    result = run(["classify", "--labels", "positive,negative", "--file", str(rows)])
    assert result.returncode == 0, result.stderr
    written = [json.loads(line) for line in (tmp_path / "rows.classified.jsonl").read_text().splitlines()]
    assert [(r["id"], r["label"]) for r in written] == [(1, "positive"), (2, "negative")]


def test_classify_refuses_a_single_label():
    result = run(["classify", "--labels", "positive", "text"])
    assert result.returncode == 2 and "two labels" in result.stderr


def test_serve_refuses_agent_tools_it_cannot_load():
    env = {**os.environ, "HFCHAIN_AGENT_TOOLS": "calculator,no_such_module:tool", "HFCHAIN_PORT": "9"}
    done = subprocess.run([HFCHAIN, "serve"], capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 2
    assert "'no_such_module:tool' cannot be loaded" in done.stderr and "Traceback" not in done.stderr


def test_ingest_reads_a_folder_lists_what_it_skipped_and_a_second_run_changes_nothing(tmp_path):
    from tests.fixtures.documents import pdf_bytes

    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "note.md").write_text("The vault code is 9182.")
    (folder / "sub" / "manual.pdf").write_bytes(pdf_bytes(["Page one.", "Replace the filter every month."]))
    (folder / "sub" / "photo.png").write_bytes(b"\x89PNG")
    (folder / "empty.txt").write_text("   ")
    env = {**os.environ, "HFCHAIN_DATA_DIR": str(tmp_path / "data")}
    args = [HFCHAIN, "ingest", str(folder), "--collection", "docs", "--metadata", '{"team": "ops"}']
    first = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert first.returncode == 0, first.stderr
    assert "2 added, 0 replaced, 0 unchanged" in first.stderr and "skipped 2 file(s)" in first.stderr
    assert "photo.png: not a supported kind" in first.stderr and "empty.txt" in first.stderr
    second = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert "0 added, 0 replaced, 2 unchanged" in second.stderr

    from chains.backends.encoder import Encoder
    from chains.knowledge import EmbeddingService, build_knowledge
    from chains.settings import load_settings

    knowledge = build_knowledge(load_settings(data_dir=tmp_path / "data"), EmbeddingService(Encoder()))
    [hit] = knowledge.search("default", "docs", "how often is the filter replaced", k=1)
    assert (hit["document_id"], hit["page"], hit["metadata"]) == ("sub/manual.pdf", 2, {"team": "ops"})


def test_prepare_names_what_it_made_ready_and_a_second_run_reuses_the_cache(embedded_backend):
    result = run(["prepare"])
    assert result.returncode == 0, result.stderr
    assert "ready in" in result.stdout and "(fp32, cpu;" in result.stdout  # the model, on auto
    assert "encoder all-MiniLM-L6-v2: ready in" in result.stdout and "(onnx-fp32;" in result.stdout
    assert "exporting" not in result.stderr  # make install (or the fixture's run) already exported both
    torch_only = subprocess.run(
        [HFCHAIN, "prepare"],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "HFCHAIN_RUNTIME": "torch", "HFCHAIN_ENCODER_RUNTIME": "torch"},
    )
    assert torch_only.returncode == 0 and torch_only.stdout.count("nothing to export") == 2


def agent_with_approval(stdin: str) -> subprocess.CompletedProcess:
    """`hfchain agent` whose calculator call waits for the person at the terminal."""
    args = [HFCHAIN, "agent", "What is 12 times 7?", "--tool-choice", "required", "--max-steps", "2"]
    args += ["--max-new-tokens", "32", "--require-approval", "calculator"]
    env = {**os.environ, "HFCHAIN_AGENT_TOOLS": "calculator", "NO_COLOR": "1"}
    return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=300, env=env)


def test_cli_agent_asks_before_a_tool_acts_and_runs_the_edited_call():
    done = agent_with_approval('e\n{"expression": "6 * 7"}\n')
    assert done.returncode == 0, done.stderr
    assert "calculator(" in done.stdout and "needs your approval" in done.stdout
    assert "← calculator: 42" in done.stdout  # the edited arguments ran


def test_cli_agent_rejects_a_call_with_a_reason_the_model_reads():
    done = agent_with_approval("r\nnot today\n")
    assert done.returncode == 0, done.stderr
    assert "needs your approval" in done.stdout and "← calculator" not in done.stdout
    assert "[2 steps]" in done.stderr
