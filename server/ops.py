"""Operational routes: liveness and readiness; session export and reset."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path as FilePath
from typing import Literal

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from chains.agent.toolbox import Toolbox
from chains.backends.onnx.encoder import BROWSER_FILES as MODEL_FILES
from chains.classify.jobs import Trainings
from chains.classify.registry import NAME_PATTERN, Registry
from chains.classify.train import FORMATS, TrainOptions, load_rows
from chains.errors import InvalidInput, NotFound
from chains.sessions import SESSION_ID_PATTERN, SessionStore
from chains.settings import Settings
from chains.tenants.audit import audit
from server.callers import caller, tenant

SessionId = Path(pattern=SESSION_ID_PATTERN, description="The session id given to /chat or /v1")
ClassifierName = Path(pattern=NAME_PATTERN, description="A trained classifier's name")
# the files transformers.js reads for a model, and where each lies in a classifier's folder
BROWSER_FILES = {
    **{file: file for file in MODEL_FILES},
    "onnx/model.onnx": "onnx/model.onnx",
    "onnx/model_quantized.onnx": "onnx/model_int8.onnx",
}
BrowserFile = Path(
    pattern="^(" + "|".join(re.escape(f) for f in BROWSER_FILES) + ")$",
    description="A file of the classifier in transformers.js's layout",
)


def ops_router() -> APIRouter:
    """GET /health (the process answers), GET /ready (the model can serve), GET /metrics (Prometheus)."""
    router = APIRouter(tags=["ops"])

    @router.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @router.get("/metrics")
    def metrics(request: Request) -> Response:
        registry = request.app.state.metrics.registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @router.get("/ready")
    def ready(request: Request) -> JSONResponse:
        backend = request.app.state.backend
        body = {"model": backend.model_name, "backend": backend.name, "runtime": backend.runtime}
        embeddings = getattr(request.app.state, "embeddings", None)
        if embeddings is not None:  # torch, onnx-fp32, onnx-int8 once it has run; remote for a TEI server
            body["encoder_runtime"] = getattr(embeddings.encoder, "runtime_label", "remote")
        engine = backend.engine
        if backend.is_ready():
            return JSONResponse({"status": "ready", **body})
        error = getattr(engine, "load_error", None)
        status = {"status": "failed", "error": str(error)} if error else {"status": "loading"}
        return JSONResponse({**status, **body}, status_code=503, headers={"Retry-After": "2"})

    return router


def sessions_router(sessions: SessionStore) -> APIRouter:
    """GET /sessions/{id} (export the stored conversation) and DELETE /sessions/{id} (reset it)."""
    router = APIRouter(prefix="/sessions", tags=["sessions"])

    @router.get("/{session_id}")
    async def export(request: Request, session_id: str = SessionId) -> dict:
        found = await run_in_threadpool(sessions.export, session_id, tenant(request))
        if found is None:
            raise NotFound(f"no session {session_id!r}: it has no stored turn (or was deleted)")
        return found

    @router.delete("/{session_id}")
    async def reset(request: Request, session_id: str = SessionId) -> dict:
        removed = await run_in_threadpool(sessions.delete, session_id, tenant(request))
        if not removed:
            raise NotFound(f"no session {session_id!r}: it has no stored turn (or was deleted)")
        audit("session.deleted", caller(request), tenant(request), session_id=session_id, messages=removed)
        return {"session_id": session_id, "deleted_messages": removed}

    return router


def agent_router(toolbox: Toolbox) -> APIRouter:
    """GET /agent/tools: the tools the agent may call, and the MCP servers that gave none (with why)."""
    router = APIRouter(tags=["agent"])

    @router.get("/agent/tools")
    def tools() -> dict:
        return toolbox.describe()

    return router


class TrainRequest(BaseModel):
    """Options of POST /classifiers (form fields with a file, or JSON with "rows")."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="Name to serve it under")
    text_column: str = "text"
    label_column: str = "label"
    base: str | None = Field(None, pattern=r"^[\w.-]+/[\w.-]+$", description="Hub id of the encoder")
    method: Literal["finetune", "head"] = "finetune"
    epochs: float = Field(3.0, gt=0, le=20)
    max_length: int = Field(128, ge=8, le=512)
    eval_fraction: float = Field(0.1, ge=0.05, le=0.5)
    batch_size: int = Field(16, ge=1, le=256)
    learning_rate: float | None = Field(None, gt=0, le=1)
    export: Literal["onnx", "onnx-int8"] | None = Field(None, description="Also export to ONNX, serve that")


class Row(BaseModel):
    text: str
    label: str | int


def classifiers_router(registry: Registry, trainings: Trainings, settings: Settings) -> APIRouter:
    """POST /classifiers (train in a worker process), GET /classifiers, GET and DELETE /classifiers/{name}."""
    router = APIRouter(prefix="/classifiers", tags=["classifiers"])
    uploads = settings.data_dir / "uploads"

    @router.post("", status_code=202)
    async def train(request: Request) -> dict:
        if request.headers.get("content-type", "").startswith(
            ("multipart/form-data", "application/x-www-form")
        ):
            fields, path = await _form_upload(request, uploads)
        else:
            fields, path = await _json_rows(request, uploads)
        try:
            asked = TrainRequest.model_validate(fields)
            options = TrainOptions(**asked.model_dump(exclude={"name"}), max_rows=settings.train_max_rows)
            await run_in_threadpool(load_rows, path, options)  # bad data: 422 now, not after a spawn
            started = await run_in_threadpool(trainings.start, asked.name, path, options, tenant(request))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        audit("classifier.training_started", caller(request), tenant(request), name=asked.name)
        return started

    @router.get("")
    async def listing(request: Request) -> dict:
        own = tenant(request)
        cards = await run_in_threadpool(registry.tenant(own).describe)
        listed = [{**c, "status": "done"} for c in cards]
        return {"classifiers": listed, "trainings": trainings.active(own)}

    @router.get("/{name}")
    async def one(request: Request, name: str = ClassifierName) -> dict:
        card = await run_in_threadpool(registry.tenant(tenant(request)).card, name)
        if card is not None:
            return {**card, "status": "done"}
        state = trainings.state(name, tenant(request))
        if state is None:
            raise NotFound(f"no classifier named {name!r}: GET /classifiers lists them")
        return state

    @router.get("/{name}/model/{file:path}")
    async def model_file(
        request: Request, name: str = ClassifierName, file: str = BrowserFile
    ) -> FileResponse:
        own = registry.tenant(tenant(request))
        folder = own.path(name)
        if own.card(name) is None:
            raise NotFound(f"no classifier named {name!r}: GET /classifiers lists them")
        path = folder / BROWSER_FILES[file]
        if not path.is_file():
            hint = (
                "train it with export 'onnx' (or run hfchain export-onnx)" if file.startswith("onnx/") else ""
            )
            raise NotFound(f"classifier {name!r} has no {file}{': ' + hint if hint else ''}")
        return FileResponse(path, headers={"cache-control": "no-cache"})

    @router.delete("/{name}")
    async def remove(request: Request, name: str = ClassifierName) -> dict:
        own = tenant(request)
        state = trainings.state(name, own)
        if registry.tenant(own).card(name) is None and state is not None:
            trainings.forget(name, own)  # a failed training: its state goes
        else:
            await run_in_threadpool(registry.tenant(own).delete, name)
            trainings.forget(name, own)
        audit("classifier.deleted", caller(request), own, name=name)
        return {"name": name, "deleted": True}

    return router


async def _form_upload(request: Request, folder: FilePath) -> tuple[dict, FilePath]:
    """The form's fields and its file, saved under `folder`."""
    form = await request.form(max_files=1, max_fields=20)
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise InvalidInput("send the labelled data as the form's 'file' field (CSV, JSONL or Parquet)")
    suffix = FilePath(upload.filename or "").suffix.lower()
    if suffix not in FORMATS:
        raise InvalidInput(f"file {upload.filename!r}: give a .csv, .jsonl or .parquet file")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}{suffix}"
    path.write_bytes(await upload.read())
    return {k: v for k, v in form.items() if k != "file"}, path


async def _json_rows(request: Request, folder: FilePath) -> tuple[dict, FilePath]:
    """A JSON body's options and its "rows" ([{"text", "label"}, ...]), saved as JSONL under `folder`."""
    body = await request.json()
    if not isinstance(body, dict) or not isinstance(body.get("rows"), list) or not body["rows"]:
        raise InvalidInput(
            'send {"name": ..., "rows": [{"text": ..., "label": ...}, ...]} or a multipart file'
        )
    rows = [Row.model_validate(row) for row in body["rows"]]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.jsonl"
    lines = (json.dumps({"text": r.text, "label": str(r.label)}, ensure_ascii=False) for r in rows)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    fields = {k: v for k, v in body.items() if k != "rows"}
    return {**fields, "text_column": "text", "label_column": "label"}, path
