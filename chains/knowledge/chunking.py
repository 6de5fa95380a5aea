"""Documents cut into chunks for the encoder: hfchain's own splitter on the encoder's tokenizer, each chunk
keeping its position, character offsets and PDF page."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from chains.budget import split_text
from chains.knowledge.parsing import Parsed
from chains.knowledge.store import ChunkRow
from chains.tokens import Tokens


@dataclass(frozen=True)
class Prepared:
    """A document ready to embed: its id, where it came from, its metadata, text and chunks."""

    document_id: str
    text: str
    chunks: list[ChunkRow]
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    content_hash: str = ""

    def row(self) -> dict[str, Any]:
        """The document's row in the store."""
        return {
            "document_id": self.document_id,
            "content_hash": self.content_hash,
            "metadata": self.metadata,
            "source": self.source,
            "chars": len(self.text),
        }


def chunk_rows(parsed: Parsed, tokens: Tokens, size: int, overlap: int) -> list[ChunkRow]:
    """`parsed` cut into chunks of at most `size` encoder tokens, `overlap` tokens repeated between them;
    a PDF page by page, so that each chunk cites one page."""
    bounds = [*parsed.pages, len(parsed.text)] if parsed.pages else [0, len(parsed.text)]
    rows: list[ChunkRow] = []
    for page, (start, end) in enumerate(pairwise(bounds), start=1):
        for piece in split_text(parsed.text[start:end], tokens, size, overlap=overlap):
            if piece.text.strip():
                number = page if parsed.pages else None
                a, b = start + piece.start, start + piece.end
                rows.append(ChunkRow(len(rows), piece.text, a, b, number, piece.tokens))
    return rows


def prepare(
    document_id: str,
    parsed: Parsed,
    tokens: Tokens,
    recipe: str,
    size: int,
    overlap: int,
    metadata: dict[str, Any] | None = None,
    source: str | None = None,
) -> Prepared:
    """A parsed document chunked, with a hash of everything that decides its chunks and vectors
    (`recipe` names the encoder and chunk sizes): the same hash again means nothing to do."""
    metadata = dict(metadata or {})
    digest = hashlib.sha256()
    for part in (recipe, json.dumps(metadata, sort_keys=True), parsed.text):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    chunks = chunk_rows(parsed, tokens, size, overlap)
    return Prepared(document_id, parsed.text, chunks, metadata, source, digest.hexdigest())
