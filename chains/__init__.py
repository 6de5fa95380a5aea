"""hfchain's LangChain runnables: build a backend from settings, then the chains over it.

Names resolve on first use, so importing one module (e.g. chains.settings) does not import every chain.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "AgentInput": "chains.agent.runner",
    "build_agent": "chains.agent.runner",
    "Backend": "chains.backends",
    "build_backend": "chains.backends",
    "ChatInput": "chains.chat",
    "build_chat_chain": "chains.chat",
    "ClassifyInput": "chains.classify",
    "build_classify_chain": "chains.classify",
    "build_classify_methods": "chains.classify",
    "GenerateInput": "chains.generate",
    "build_generate_chain": "chains.generate",
    "Settings": "chains.settings",
    "get_settings": "chains.settings",
    "load_settings": "chains.settings",
    "SummarizeInput": "chains.summarize",
    "build_summarize_chain": "chains.summarize",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'chains' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
