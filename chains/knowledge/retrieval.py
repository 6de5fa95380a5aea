"""LangChain's interfaces over a collection: a `VectorStore` (so `as_retriever()` works as users expect)
and the /retrieve runnable ({"query", "collection", "k"?} -> Documents with scores and sources)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Literal

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.vectorstores import VectorStore
from pydantic import BaseModel, ConfigDict, Field

from chains.knowledge.collections import MAX_K, Knowledge, text_id
from chains.schemas import drop_nulls
from chains.tenants.caller import DEFAULT_TENANT, NAME_PATTERN, tenant_of


class RetrieveInput(BaseModel):
    """Input of /retrieve."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=drop_nulls)  # the playground draws it

    query: str = Field(min_length=1, max_length=10_000, description="What to search for")
    collection: str = Field(pattern=NAME_PATTERN, description="The collection to search")
    k: int = Field(5, ge=1, le=MAX_K, description="How many chunks to return")
    filter: dict[str, Any] | None = Field(None, description="Metadata the chunks' documents must match")
    mode: Literal["hybrid", "vector", "text"] = "hybrid"


def as_document(result: dict[str, Any], collection: str) -> Document:
    """A search result as a LangChain Document: its text, the document's metadata and where it came from."""
    fields = ("document_id", "chunk", "start", "end", "page", "source", "score", "vector_score", "text_score")
    where = {key: result[key] for key in fields}
    return Document(
        page_content=result["text"],
        id=f"{result['document_id']}#{result['chunk']}",
        metadata={**result["metadata"], **where, "collection": collection},
    )


class CollectionStore(VectorStore):
    """One tenant's collection as a LangChain VectorStore (hybrid search by default)."""

    def __init__(
        self, knowledge: Knowledge, collection: str, tenant: str = DEFAULT_TENANT, mode: str = "hybrid"
    ):
        self.knowledge, self.collection, self.tenant, self.mode = knowledge, collection, tenant, mode

    @property
    def embeddings(self) -> Embeddings | None:
        return getattr(self.knowledge.embeddings.encoder, "embeddings", None)

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        **_: Any,
    ) -> list[str]:
        """Store each text as a document (its id: given, or a hash of the text)."""
        texts = list(texts)
        ids = list(ids or [None] * len(texts))
        metadatas = list(metadatas or [{}] * len(texts))
        ids = [i or text_id(t) for i, t in zip(ids, texts, strict=True)]
        prepared = [
            self.knowledge.prepare_text(i, t, m) for i, t, m in zip(ids, texts, metadatas, strict=True)
        ]
        self.knowledge.ingest(self.tenant, self.collection, prepared)
        return ids

    def delete(self, ids: list[str] | None = None, **_: Any) -> bool | None:
        """Remove documents by id."""
        for document_id in ids or []:
            self.knowledge.delete_document(self.tenant, self.collection, document_id)
        return True

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: dict | None = None, **_: Any
    ) -> list[tuple[Document, float]]:
        results = self.knowledge.search(self.tenant, self.collection, query, k, filter, self.mode)
        return [(as_document(r, self.collection), r["score"]) for r in results]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

    def _select_relevance_score_fn(self):
        return lambda score: score

    @classmethod
    def from_texts(
        cls, texts: list[str], embedding: Embeddings, metadatas: list[dict] | None = None, **kwargs
    ):
        """Not supported: open a collection with CollectionStore(knowledge, name), then add_texts."""
        raise NotImplementedError("use CollectionStore(knowledge, collection).add_texts(...)")


def build_retrieve_chain(knowledge: Knowledge) -> Runnable:
    """{"query", "collection", "k"?, "filter"?, "mode"?} -> [Document, ...] from the caller's collection."""

    def run(value: Any, config: RunnableConfig) -> list[Document]:
        asked = RetrieveInput.model_validate(value)
        results = knowledge.search(
            tenant_of(config), asked.collection, asked.query, asked.k, asked.filter, asked.mode
        )
        return [as_document(r, asked.collection) for r in results]

    async def arun(value: Any, config: RunnableConfig) -> list[Document]:
        return await asyncio.to_thread(run, value, config)

    chain = RunnableLambda(run, afunc=arun, name="retrieve")
    return chain.with_types(input_type=RetrieveInput, output_type=list[Document])
