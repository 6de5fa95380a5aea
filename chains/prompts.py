"""Prompt files from prompts/, loaded once."""

from __future__ import annotations

from functools import cache
from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"


@cache
def load_prompt(name: str) -> str:
    """The text of prompts/<name>.txt, without its trailing newline."""
    path = PROMPTS_DIR / f"{name}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"prompt {name!r} not found: expected {path}")
    return path.read_text(encoding="utf-8").rstrip("\n")
