"""The `hfchain` console script on the embedded model: generate and interactive chat."""

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
