"""Collections over HTTP: create, list, read and delete them; upload documents (files or JSON), list and
delete documents; search. Each collection belongs to the caller's tenant."""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chains.errors import InvalidInput
from chains.knowledge.chunking import Prepared
from chains.knowledge.collections import MAX_K, Knowledge, text_id
from chains.knowledge.jobs import Ingestions
from chains.tenants.audit import audit
from chains.tenants.caller import NAME_HELP, NAME_PATTERN
from server.callers import caller, count_prompt_tokens, tenant

CollectionName = Path(pattern=NAME_PATTERN, description=f"A collection's name ({NAME_HELP})")
UPLOAD_PATH = r"^/collections/[^/]+/documents$"
MAX_FILES = 1000


class NewCollection(BaseModel):
    """Body of POST /collections."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description=f"The collection's name ({NAME_HELP})")
    description: str = Field("", max_length=2000)


class JsonDocument(BaseModel):
    """One document sent as JSON."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="The document's id (default: a hash of its text)")
    text: str = Field(description="The document's text")
    metadata: dict[str, Any] | None = Field(None, description="Any JSON object: kept with every chunk")


class SearchRequest(BaseModel):
    """Body of POST /collections/{name}/search."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=10_000)
    k: int = Field(5, ge=1, le=MAX_K, description="How many chunks to return")
    filter: dict[str, Any] | None = Field(
        None, description='Metadata that must match: {"key": value} or {"key": [value, ...]}; "document_id"'
    )
    mode: Literal["hybrid", "vector", "text"] = "hybrid"


def collections_router(knowledge: Knowledge, ingestions: Ingestions, job_bytes: int) -> APIRouter:
    """The /collections routes; uploads of `job_bytes` or more run as a job (202)."""
    router = APIRouter(prefix="/collections", tags=["collections"])

    @router.post("", status_code=201)
    async def create(body: NewCollection, request: Request) -> dict:
        made = await run_in_threadpool(knowledge.create, tenant(request), body.name, body.description)
        audit("collection.created", caller(request), tenant(request), name=body.name)
        return made

    @router.get("")
    async def listing(request: Request) -> dict:
        own = tenant(request)

        def describe_all() -> list[dict]:
            return [knowledge.describe(own, name) for name in knowledge.names(own)]

        return {"collections": await run_in_threadpool(describe_all)}

    @router.get("/{name}")
    async def one(request: Request, name: str = CollectionName) -> dict:
        return await run_in_threadpool(knowledge.describe, tenant(request), name)

    @router.delete("/{name}")
    async def remove(request: Request, name: str = CollectionName) -> dict:
        removed = await run_in_threadpool(knowledge.delete, tenant(request), name)
        audit("collection.deleted", caller(request), tenant(request), name=name)
        return removed

    @router.post("/{name}/documents")
    async def upload(
        request: Request,
        name: str = CollectionName,
        wait: bool | None = Query(None, description="true: answer when stored; false: always a job (202)"),
    ) -> Any:
        own = tenant(request)
        await run_in_threadpool(knowledge.store.usable, own, name)  # 404 before any parsing
        documents, size = await _documents(request, knowledge)
        as_job = size >= job_bytes if wait is None else not wait
        audit("collection.documents_added", caller(request), own, name=name, documents=len(documents))
        if as_job:
            job = await run_in_threadpool(ingestions.submit, own, name, documents)
            sent = sum(c.tokens for d in documents for c in d.chunks)  # as sent: unchanged ones too
            count_prompt_tokens(request, sent)
            return JSONResponse({"collection": name, "job": job}, status_code=202)
        result = await run_in_threadpool(knowledge.ingest, own, name, documents)
        count_prompt_tokens(request, result["tokens"])
        return result

    @router.get("/{name}/documents")
    async def documents(request: Request, name: str = CollectionName) -> dict:
        return {"documents": await run_in_threadpool(knowledge.documents, tenant(request), name)}

    @router.delete("/{name}/documents/{document_id:path}")
    async def remove_document(request: Request, document_id: str, name: str = CollectionName) -> dict:
        removed = await run_in_threadpool(knowledge.delete_document, tenant(request), name, document_id)
        audit(
            "collection.document_deleted", caller(request), tenant(request), name=name, document=document_id
        )
        return removed

    @router.post("/{name}/search")
    async def search(body: SearchRequest, request: Request, name: str = CollectionName) -> dict:
        results = await run_in_threadpool(
            knowledge.search, tenant(request), name, body.query, body.k, body.filter, body.mode
        )
        return {"collection": name, "mode": body.mode, "results": results}

    return router


async def _documents(request: Request, knowledge: Knowledge) -> tuple[list[Prepared], int]:
    """The request's documents parsed and chunked (any failure refuses them all, naming the document),
    and the upload's size in bytes."""
    kind = request.headers.get("content-type", "")
    if kind.startswith(("multipart/form-data", "application/x-www-form")):
        return await _files(request, knowledge)
    body = await request.body()
    items = json.loads(body)
    if isinstance(items, dict) and isinstance(items.get("documents"), list):
        items = items["documents"]
    if not isinstance(items, list) or not items:
        raise InvalidInput(
            'send documents as a JSON list [{"id"?, "text", "metadata"?}, ...] or as multipart files '
            "(the form field 'files')"
        )
    try:
        parsed = [JsonDocument.model_validate(item) for item in items]
    except ValidationError as error:
        raise InvalidInput(f"documents: {_first_error(error)}") from None
    _no_repeats([d.id for d in parsed if d.id])

    def prepare_all() -> list[Prepared]:
        return [knowledge.prepare_text(d.id or text_id(d.text), d.text, d.metadata) for d in parsed]

    return await run_in_threadpool(prepare_all), len(body)


async def _files(request: Request, knowledge: Knowledge) -> tuple[list[Prepared], int]:
    form = await request.form(max_files=MAX_FILES, max_fields=20)
    uploads = [value for value in form.getlist("files") + form.getlist("file") if not isinstance(value, str)]
    if not uploads:
        raise InvalidInput("send the documents as the form's 'files' field (one or more files)")
    metadata = _form_metadata(form.get("metadata"))
    given_id = form.get("document_id")
    if given_id and len(uploads) > 1:
        raise InvalidInput("document_id names one document: send one file with it, or leave it out")
    files = [(upload.filename or "upload", await upload.read()) for upload in uploads]
    _no_repeats([given_id or filename.rsplit("/", 1)[-1] for filename, _ in files])

    def prepare_all() -> list[Prepared]:
        return [knowledge.prepare_file(n, data, given_id or None, metadata) for n, data in files]

    return await run_in_threadpool(prepare_all), sum(len(data) for _, data in files)


def _form_metadata(value: Any) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    try:
        metadata = json.loads(value)
    except (TypeError, json.JSONDecodeError):
        metadata = None
    if not isinstance(metadata, dict):
        raise InvalidInput('the form field metadata must be a JSON object, e.g. {"team": "legal"}')
    return metadata


def _no_repeats(ids: list[str]) -> None:
    seen = set()
    for document_id in ids:
        if document_id in seen:
            raise InvalidInput(f"document id {document_id!r} is sent twice: send each document once")
        seen.add(document_id)


def _first_error(error: ValidationError) -> str:
    item = error.errors()[0]
    where = ".".join(str(p) for p in item["loc"])
    return f"{where}: {item['msg']}" if where else item["msg"]
