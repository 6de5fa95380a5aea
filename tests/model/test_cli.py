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
