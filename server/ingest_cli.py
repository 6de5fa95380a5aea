"""`hfchain ingest PATH... --collection NAME`: files and folders (recursively) into a collection of the
document store the server reads, with a progress bar and every skipped file listed with why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from chains.settings import Settings


def files_under(paths: list[Path]) -> list[tuple[Path, str]]:
    """(file, document id) for every file named or under a named folder: a file's id is its name, a
    folder's files are named by their path inside it (two README.md in two folders stay two documents)."""
    found = []
    for path in paths:
        if path.is_dir():
            found += [(f, f.relative_to(path).as_posix()) for f in sorted(path.rglob("*")) if f.is_file()]
        else:
            found.append((path, path.name))
    return found


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders (read recursively)", exists=True)],
    collection: Annotated[str, typer.Option("--collection", "-c", help="The collection (made if missing)")],
    tenant: Annotated[str, typer.Option(help="The tenant that owns the collection")] = "default",
    metadata: Annotated[str | None, typer.Option(help="JSON object kept with every document")] = None,
) -> None:
    """Parse, chunk, embed and store documents (.txt .md .html .pdf .docx) in a collection."""
    from chains.errors import HfchainError
    from chains.knowledge.parsing import SUPPORTED
    from server.cli import _settings

    settings, console = _settings(), Console(stderr=True)
    extra = _metadata(metadata)
    knowledge = _knowledge(settings)
    try:
        if collection not in knowledge.names(tenant):
            knowledge.create(tenant, collection)
            console.print(f"made collection {collection!r} (tenant {tenant})")
    except HfchainError as error:
        typer.secho(error.message, fg="red", err=True)
        raise typer.Exit(2) from None
    prepared, skipped = [], []
    found = files_under(paths)
    with _bar(console) as bar:
        task = bar.add_task("reading", total=len(found))
        for file, document_id in found:
            why = _unusable(file, settings, SUPPORTED)
            try:
                if why is None:
                    data = file.read_bytes()
                    prepared.append(knowledge.prepare_file(file.name, data, document_id, extra or None))
            except HfchainError as error:
                why = error.message
            if why is not None:
                skipped.append((file, why))
            bar.advance(task)
        task = bar.add_task("embedding", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = knowledge.ingest(tenant, collection, prepared, progress) if prepared else None
    _report(console, collection, result, skipped)
    if skipped and not prepared:
        raise typer.Exit(1)


def _knowledge(settings: Settings):
    from chains.backends.encoder import build_encoder
    from chains.knowledge import EmbeddingService, build_knowledge

    return build_knowledge(settings, EmbeddingService(build_encoder(settings)))


def _unusable(file: Path, settings: Settings, supported: tuple[str, ...]) -> str | None:
    if file.suffix.lower() not in supported:
        return f"not a supported kind ({' '.join(supported)})"
    if file.stat().st_size > settings.ingest_max_bytes:
        return f"over HFCHAIN_INGEST_MAX_BYTES ({settings.ingest_max_bytes} bytes)"
    return None


def _metadata(value: str | None) -> dict:
    if not value:
        return {}
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        typer.secho('--metadata must be a JSON object, e.g. {"team": "legal"}', fg="red", err=True)
        raise typer.Exit(2)
    return parsed


def _bar(console: Console) -> Progress:
    columns = [TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=console)


def _report(console: Console, collection: str, result: dict | None, skipped: list) -> None:
    if result is not None:
        console.print(
            f"{collection}: {result['added']} added, {result['replaced']} replaced, "
            f"{result['unchanged']} unchanged ({result['chunks']} chunks embedded)"
        )
    if skipped:
        console.print(f"skipped {len(skipped)} file(s):", style="yellow")
        for file, why in skipped:
            console.print(f"  {file}: {why}", style="yellow", highlight=False, soft_wrap=True)
