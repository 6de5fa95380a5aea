"""tool_choice "auto" decided for a small model: call the tool whose name and description are closest to what
the user asked (sentence-encoder cosine; a message that gives an instruction and then its material is also
read by its instruction alone), when it is close enough; otherwise reply in text. Under "required"
with several tools, the closest one is the call (the model picks the wrong one three times in four).

SmolLM2-135M given the choice never starts a call (benchmarks/tool_choice.py); the encoder sees the tool
descriptions, so it works for tool sets it was never tuned on. The threshold was tuned on the development
split of tests/fixtures/tool_choice.json and measured on its held-out split (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage

THRESHOLD = 0.255  # cosine above which the closest tool is called (the middle of the best cuts on dev)
CACHED_TOOLS = 512  # tool texts whose embeddings are kept
HEAD = re.compile("[:'\"‘“]")  # where an instruction's material starts (its long text dilutes the query)


def tool_text(tool: dict) -> str:
    """What the encoder reads of an OpenAI function tool: its name in words and its description."""
    function = tool["function"]
    name = function["name"].replace("_", " ").replace("-", " ")
    description = (function.get("description") or "").strip()
    return f"{name}: {description}" if description else name


def instruction(query: str) -> str | None:
    """The instruction before the material it applies to ("Summarize: <text>", "Classify 'a review' as ..."):
    the text before the first colon or quote, when there is material after it (else None)."""
    head = HEAD.split(query, maxsplit=1)[0].strip()
    return head if head and head != query.strip() else None


class ToolRouter:
    """Chooses a tool (or none) for a conversation from the encoder's similarities."""

    def __init__(self, encoder: Any, threshold: float = THRESHOLD) -> None:
        self.encoder, self.threshold = encoder, threshold
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def warm_in_background(self) -> None:
        """Load the encoder on a thread of its own, so that the first routed request does not wait."""
        threading.Thread(
            target=self.encoder.embed, args=(["warm"],), name="hfchain-router", daemon=True
        ).start()

    def scores(self, query: str, tools: list[dict]) -> list[float]:
        """Cosine between the query (or its instruction head, whichever is closer) and each tool's text."""
        vectors = self._vectors([tool_text(t) for t in tools])
        queries = self.encoder.embed([query, *filter(None, [instruction(query)])])
        return [max(float(v @ q) for q in queries) for v in vectors]

    def choose(self, messages: list[BaseMessage], tools: list[dict], required: bool = False) -> str | None:
        """The tool to call now, or None for a text reply (always after a tool's result: answer with it).

        required: a call must be made; the closest tool whatever its score (None: leave it to the model).
        """
        if not tools or not messages or isinstance(messages[-1], ToolMessage):
            return None
        query = next((m.text for m in reversed(messages) if isinstance(m, HumanMessage)), "")
        if not query.strip():
            return None
        scores = self.scores(query, tools)
        best = max(range(len(tools)), key=scores.__getitem__)
        return tools[best]["function"]["name"] if required or scores[best] > self.threshold else None

    def _vectors(self, texts: list[str]) -> list[Any]:
        with self._lock:
            found = {t: self._cache[t] for t in texts if t in self._cache}
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            found.update(zip(missing, self.encoder.embed(missing), strict=True))
        with self._lock:
            for text in texts:
                self._cache[text] = found[text]
                self._cache.move_to_end(text)
            while len(self._cache) > CACHED_TOOLS:
                self._cache.popitem(last=False)
        return [found[t] for t in texts]
