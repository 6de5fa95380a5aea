"""The web console at `/`: static pages (no build step, no CDN) over hfchain's own JSON routes, and the
files transformers.js loads to run the embedded encoder in the browser."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from chains.backends.onnx.encoder import BROWSER_FILES, ensure_browser_export
from chains.errors import NotFound

STATIC = Path(__file__).parent / "static"
VENDOR = STATIC / "vendor"
ENCODER_FILES = (*BROWSER_FILES, "onnx/model.onnx")
EncoderFile = PathParam(
    pattern="^(" + "|".join(re.escape(f) for f in ENCODER_FILES) + ")$",
    description="A file of the sentence encoder in transformers.js's layout",
)
# The page may use threads in WebAssembly only when it is cross-origin isolated; every asset is local.
ISOLATED = {"cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp"}


def mount_console(app: FastAPI) -> None:
    """GET / (the console), /console/* (its scripts, styles and vendored transformers.js), and
    GET /encoder/model/{file} (the embedded encoder, exported for the browser on first use)."""

    @app.get("/", include_in_schema=False)
    def console() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache", **ISOLATED})

    @app.get("/encoder/model/{file:path}", tags=["console"])
    async def encoder_file(request: Request, file: str = EncoderFile) -> FileResponse:
        """The served sentence encoder as transformers.js loads it (its graph gives token vectors)."""
        encoder = request.app.state.embeddings.encoder
        if not hasattr(encoder, "folder"):
            raise NotFound("the encoder is a remote server (HFCHAIN_EMBEDDING_URL): it has no files to serve")
        folder = await run_in_threadpool(encoder.folder)
        cache = request.app.state.settings.cache_dir
        exported = await run_in_threadpool(ensure_browser_export, cache, folder, encoder.name)
        path = exported / file
        if not path.is_file():
            raise NotFound(f"the encoder has no {file}")
        return FileResponse(path, headers={"cache-control": "no-cache"})

    app.mount("/console", StaticFiles(directory=STATIC), name="console")
