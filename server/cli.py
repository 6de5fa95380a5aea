"""The `hfchain` command: serve, generate, chat, agent, mcp, summarize, classify, ingest, keys."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from chains.settings import ENV_PREFIX, Settings, SettingsError, load_settings
from server.ingest_cli import ingest

app = typer.Typer(
    help="Serve Hugging Face models through LangChain.", no_args_is_help=True, add_completion=False
)


def settings_help() -> str:
    """One line per setting: the variable, its default and what it does."""
    lines = ["Settings (environment variables, or a .env file):\n\n"]
    for name, field in Settings.model_fields.items():
        default = "" if field.default_factory else f" (default: {field.default})"
        lines.append(f"{ENV_PREFIX}{name.upper()}: {field.description}{default}\n\n")
    return "".join(lines)


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as error:
        typer.secho(str(error), fg="red", err=True)
        raise typer.Exit(2) from None


def _logging(level: str, fmt: str = "text", replica: str = "-") -> None:
    from server.logs import configure_logging

    configure_logging(level, fmt, replica)


@app.command(epilog=settings_help())
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [HFCHAIN_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [HFCHAIN_PORT]")] = None,
    model: Annotated[str | None, typer.Option(help="Hub id or folder [HFCHAIN_MODEL]")] = None,
    backend: Annotated[str | None, typer.Option(help="local or endpoint [HFCHAIN_BACKEND]")] = None,
) -> None:
    """Serve the LangServe routes (/generate, /chat, /summarize, /classify, /agent) on HOST:PORT."""
    from server.startup import pause_gc, resume_gc

    pause_gc()  # until the model is loaded: see server/startup.py
    try:
        _serve(host=host, port=port, model=model, backend=backend)
    finally:
        resume_gc(freeze=False)  # a start that failed (a no-op once the model loaded)


def _serve(**options: object) -> None:
    import uvicorn

    from chains.errors import HfchainError
    from server.app import create_app

    settings = _settings(**options)
    _logging(settings.log_level, settings.log_format, settings.replica_id)
    try:
        app_ = create_app(settings)
    except HfchainError as error:  # e.g. a sessions database or agent tool that cannot be used
        typer.secho(error.message, fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"hfchain: serving {app_.state.backend.model_name} ({app_.state.backend.runtime}) on "
        f"http://{settings.host}:{settings.port} (chat playground: "
        f"http://{settings.host}:{settings.port}/chat/playground/)",
        err=True,
    )
    uvicorn.run(
        app_,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # keep our handlers (request ids, JSON)
        access_log=False,  # hfchain logs one line per request itself, with its id and duration
    )


def _ready_backend(settings: Settings):
    from chains import build_backend

    backend = build_backend(settings)
    if backend.engine is not None:
        typer.echo(f"loading {backend.model_name} ...", err=True)
        backend.engine.load()
    return backend


def _knobs(max_new_tokens: int | None, temperature: float | None) -> dict:
    values = {"max_new_tokens": max_new_tokens, "temperature": temperature}
    return {"configurable": {k: v for k, v in values.items() if v is not None}}


@app.command()
def prepare() -> None:
    """Make the first start fast: convert the embedded model, export it for HFCHAIN_RUNTIME=auto (ONNX fp32)
    and the encoder for HFCHAIN_ENCODER_RUNTIME into the cache. `make install` runs it; a start (or the
    encoder's first use) does the same when it was not run."""
    settings = _settings()
    _logging("info")
    _prepare_model(settings)
    _prepare_encoder(settings)


def _prepare_model(settings: Settings) -> None:
    import time

    from chains.backends import model_source
    from chains.backends.onnx.export import ensure_exported

    if settings.backend != "local" or settings.runtime == "torch":
        chosen = f"HFCHAIN_BACKEND={settings.backend}, HFCHAIN_RUNTIME={settings.runtime}"
        typer.echo(f"model: nothing to export for {chosen}")
        return
    started = time.perf_counter()
    source, name = model_source(settings)
    source = source() if callable(source) else source
    precision = "fp32" if settings.runtime == "auto" else settings.onnx_precision
    provider = "cpu" if settings.runtime == "auto" else settings.onnx_provider
    try:
        folder = ensure_exported(settings.cache_dir, source, precision, provider)
    except Exception as error:  # an architecture the exporter lacks: auto serves it on torch
        typer.secho(f"{name}: no ONNX export ({str(error).splitlines()[0]}); it will run on torch", err=True)
        return
    typer.echo(f"{name}: ready in {folder} ({precision}, {provider}; {time.perf_counter() - started:.1f} s)")


def _prepare_encoder(settings: Settings) -> None:
    import time

    from chains.backends.encoder import build_encoder

    if settings.embedding_url or settings.encoder_runtime == "torch":
        typer.echo("encoder: nothing to export (HFCHAIN_EMBEDDING_URL or HFCHAIN_ENCODER_RUNTIME=torch)")
        return
    started = time.perf_counter()
    encoder = build_encoder(settings)
    onnx = encoder.onnx  # exports into the cache when it lacks the graphs; auto falls back to torch
    where = f"ready in {onnx.graph.parent}" if onnx else "no ONNX export; it will run on torch"
    seconds = time.perf_counter() - started
    typer.echo(f"encoder {encoder.name}: {where} ({encoder.runtime_label}; {seconds:.1f} s)")
    _prepare_browser_encoder(settings, encoder)


def _prepare_browser_encoder(settings: Settings, encoder) -> None:
    """The encoder in transformers.js's layout, for the console's "run in this browser"."""
    from chains.backends.onnx.encoder import EncoderExportError, ensure_browser_export

    try:
        folder = ensure_browser_export(settings.cache_dir, encoder.folder(), encoder.name)
    except EncoderExportError as error:  # the console's in-browser embedding is then unavailable
        typer.secho(f"encoder {encoder.name}: no browser export ({str(error).splitlines()[0]})", err=True)
        return
    typer.echo(f"encoder {encoder.name}: browser export ready in {folder}")


@app.command()
def generate(
    prompt: str,
    max_new_tokens: Annotated[int | None, typer.Option(help="Most tokens to generate")] = None,
    temperature: Annotated[float | None, typer.Option(help="0 = greedy")] = None,
) -> None:
    """Complete PROMPT, streaming the text to the terminal."""
    from chains import build_generate_chain

    settings = _settings()
    _logging("warning")
    chain = build_generate_chain(_ready_backend(settings))
    for piece in chain.stream({"prompt": prompt}, config=_knobs(max_new_tokens, temperature)):
        typer.echo(piece, nl=False)
    typer.echo()


@app.command()
def chat(
    max_new_tokens: Annotated[int | None, typer.Option(help="Most tokens per reply")] = None,
    temperature: Annotated[float | None, typer.Option(help="0 = greedy")] = None,
) -> None:
    """Chat interactively; replies stream as they are generated. Ctrl-D or /exit quits, /reset forgets."""
    from langchain_core.messages import AIMessage, HumanMessage

    from chains import build_chat_chain

    settings = _settings()
    _logging("warning")
    chain = build_chat_chain(_ready_backend(settings), settings.system_prompt)
    history: list = []
    while (line := _read_line()) is not None:
        if line.strip() in {"/exit", "/quit"}:
            break
        if line.strip() == "/reset" or not line.strip():
            history = [] if line.strip() else history
            continue
        history.append(HumanMessage(content=line))
        reply = ""
        for chunk in chain.stream({"messages": history}, config=_knobs(max_new_tokens, temperature)):
            reply += chunk.content
            typer.echo(chunk.content, nl=False)
        typer.echo()
        history.append(AIMessage(content=reply))


@app.command()
def agent(
    question: Annotated[str, typer.Argument(help="What to ask the agent")],
    max_steps: Annotated[int | None, typer.Option(help="Most model calls [HFCHAIN_AGENT_MAX_STEPS]")] = None,
    tool_choice: Annotated[
        str | None, typer.Option(help="auto, or required: the first step calls a tool")
    ] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Most tokens per model call")] = None,
    temperature: Annotated[float | None, typer.Option(help="0 = greedy")] = None,
    require_approval: Annotated[
        str | None,
        typer.Option(
            help="Tools to approve before they run, comma-separated [HFCHAIN_AGENT_REQUIRE_APPROVAL]"
        ),
    ] = None,
) -> None:
    """Ask the agent QUESTION; each tool call, each result and the answer stream to the terminal. A call
    that needs approval is shown and waits for yours: approve, edit its arguments, or reject it."""
    import asyncio

    from chains.agent.runner import build_agent
    from chains.agent.toolbox import load_mcp_tools
    from chains.classify import build_classify_chain, build_classify_methods
    from chains.errors import HfchainError
    from chains.summarize import build_summarize_chain

    overrides = {"agent_max_steps": max_steps} if max_steps else {}
    settings = _settings(**overrides, **({"agent_tool_choice": tool_choice} if tool_choice else {}))
    _logging("warning")
    backend = _ready_backend(settings)
    methods = build_classify_methods(backend, settings.classifier)
    classify = build_classify_chain(methods, settings.classify_method)
    runner = build_agent(backend, settings, build_summarize_chain(backend), classify)
    config = _knobs(max_new_tokens, temperature)
    if require_approval:
        names = [n.strip() for n in require_approval.split(",") if n.strip()]
        config["configurable"] = {**config.get("configurable", {}), "require_approval": names}
    try:
        asyncio.run(_show_agent(runner, question, config, settings.agent_mcp_servers, load_mcp_tools))
    except HfchainError as error:
        typer.secho(error.message, fg="red", err=True)
        raise typer.Exit(2) from None


async def _show_agent(runner, question: str, config: dict, mcp: str | None, load_mcp) -> None:
    """Run the agent on a thread kept in memory: stream the model's text and each tool's input and output;
    when a call needs approval, show it and ask, then resume with the answer."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    await load_mcp(runner.toolbox, mcp)
    graph, graph_config = runner.graph(config, InMemorySaver())
    graph_config["configurable"] = {**graph_config.get("configurable", {}), "thread_id": "cli"}
    payload: object = {"messages": [{"role": "user", "content": question}]}
    while True:
        async for event in graph.astream_events(payload, graph_config, version="v2"):
            _show_event(event)
        state = await graph.aget_state(graph_config)
        pending = [i for task in state.tasks for i in task.interrupts]
        if not pending:
            break
        requests = pending[0].value["action_requests"]
        payload = Command(resume={"decisions": [_decide(action) for action in requests]})
    steps = sum(m.type == "ai" for m in state.values["messages"])
    typer.echo(f"\n[{steps} steps]", err=True)


def _show_event(event: dict) -> None:
    """One event of the run, as the terminal shows it."""
    import json

    kind, node = event["event"], event.get("metadata", {}).get("langgraph_node")
    if kind == "on_chat_model_stream" and node == "model" and event["data"]["chunk"].text:
        typer.echo(event["data"]["chunk"].text, nl=False)
    elif kind == "on_tool_start":
        args = json.dumps(event["data"].get("input"), ensure_ascii=False)
        typer.secho(f"\n→ {event['name']}({args})", fg="cyan")
    elif kind == "on_tool_end":
        output = event["data"].get("output")
        failed = getattr(output, "status", None) == "error"
        text = getattr(output, "text", str(output))
        typer.secho(f"← {event['name']}: {text}", fg="red" if failed else "green")
    elif kind == "on_tool_error":
        typer.secho(f"← {event['name']} failed: {event['data'].get('error')}", fg="red")


def _decide(action: dict) -> dict:
    """Ask the person at the terminal about one pending call: approve, edit its arguments, or reject."""
    import json

    args = json.dumps(action["args"], ensure_ascii=False)
    typer.secho(f"\n? {action['name']}({args}) needs your approval", fg="yellow")
    choice = typer.prompt("[a]pprove, [e]dit or [r]eject", default="a").strip().lower()[:1]
    if choice == "e":
        while True:
            edited = typer.prompt("new arguments (JSON)", default=args)
            try:
                return {"type": "edit", "edited_action": {"name": action["name"], "args": json.loads(edited)}}
            except json.JSONDecodeError as error:
                typer.secho(f"not JSON ({error}); try again", fg="red", err=True)
    if choice == "r":
        reason = typer.prompt("why (the model reads it)", default="", show_default=False)
        return {"type": "reject", **({"message": reason} if reason else {})}
    return {"type": "approve"}


@app.command()
def mcp() -> None:
    """Serve hfchain's tools over MCP on stdin and stdout, for hosts that start their MCP servers (the
    HTTP server has them at /mcp)."""
    from server.app import create_app

    settings = _settings()
    _logging("warning")  # on stderr: stdout carries the protocol
    served = create_app(settings, backend=_ready_backend(settings))
    served.state.mcp.run(transport="stdio")


@app.command()
def summarize(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="UTF-8 text file")],
    max_new_tokens: Annotated[int | None, typer.Option(help="Most tokens per summary call")] = None,
    overlap_tokens: Annotated[int, typer.Option(help="Tokens repeated between chunks")] = 0,
) -> None:
    """Summarize FILE of any length (map-reduce within the token budget), with a progress bar."""
    from rich.progress import Progress

    from chains import build_summarize_chain

    settings = _settings()
    _logging("warning")
    chain = build_summarize_chain(_ready_backend(settings))
    value = {"text": file.read_text(encoding="utf-8"), "overlap_tokens": overlap_tokens}
    stats: dict = {}
    with Progress(transient=True, console=Console(stderr=True)) as progress:
        task = progress.add_task("splitting", total=None)
        for event in chain.stream(value, config=_knobs(max_new_tokens, None)):
            if "progress" in event:
                step = event["progress"][0]
                progress.update(task, description=step["stage"], completed=step["done"], total=step["total"])
            elif "summary" in event:
                typer.echo(event["summary"], nl=False)
            else:
                stats = dict(event)
    typer.echo()
    typer.echo(
        f"[{stats.get('chunks')} chunks, {stats.get('model_calls')} model calls, "
        f"{stats.get('tokens_in')} tokens in, {stats.get('tokens_out')} out]",
        err=True,
    )


@app.command()
def classify(
    text: Annotated[str | None, typer.Argument(help="Text to classify (or give --file)")] = None,
    labels: Annotated[str | None, typer.Option(help="Comma-separated labels, e.g. positive,negative")] = None,
    file: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="CSV or JSONL input")] = None,
    output: Annotated[
        Path | None, typer.Option(help="JSONL results (default: FILE.classified.jsonl)")
    ] = None,
    method: Annotated[str | None, typer.Option(help="embedding, llm or checkpoint")] = None,
    multi_label: Annotated[bool, typer.Option(help="Score labels independently")] = False,
    model: Annotated[str | None, typer.Option(help="A configured classifier checkpoint")] = None,
) -> None:
    """Classify TEXT, or every row of a CSV (a 'text' column) or JSONL ({"text": ...}) file."""
    import json

    from chains import build_backend, build_classify_chain, build_classify_methods

    settings = _settings()
    _logging("warning")
    backend = build_backend(settings)
    if (method or settings.classify_method) == "llm" and backend.engine is not None:
        backend.engine.load()
    from chains.classify.registry import Registry

    methods = build_classify_methods(backend, settings.classifier, Registry(settings.classifiers_dir))
    chain = build_classify_chain(methods, settings.classify_method)
    base = {
        "labels": labels.split(",") if labels else None,
        "method": method,
        "multi_label": multi_label,
        "model": model,
    }
    base = {k: v for k, v in base.items() if v is not None}
    if file is None:
        if not text:
            raise typer.BadParameter("give TEXT or --file")
        typer.echo(json.dumps(_run_classify(chain, {**base, "text": text}), indent=2))
        return
    _classify_file(chain, base, file, output or file.with_suffix(".classified.jsonl"))


@app.command("train-classifier")
def train_classifier(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV, JSONL or Parquet file")],
    name: Annotated[str, typer.Option(help="Name to serve it under (/classify with model=NAME)")],
    text_column: Annotated[str, typer.Option(help="Column with the texts")] = "text",
    label_column: Annotated[str, typer.Option(help="Column with the labels")] = "label",
    base: Annotated[
        str | None, typer.Option(help="Hub id or folder of the encoder (default: packaged MiniLM)")
    ] = None,
    method: Annotated[str, typer.Option(help="finetune (all weights) or head (encoder frozen)")] = "finetune",
    epochs: Annotated[float, typer.Option(help="Passes over the training rows")] = 3.0,
    max_length: Annotated[int, typer.Option(help="Tokens per text (longer ones are cut)")] = 128,
    eval_fraction: Annotated[float, typer.Option(help="Rows held out for evaluation")] = 0.1,
    batch_size: Annotated[int, typer.Option(help="Rows per training step")] = 16,
    learning_rate: Annotated[float | None, typer.Option(help="Default: 5e-5 (finetune), 1e-3 (head)")] = None,
    export: Annotated[
        str | None, typer.Option(help="Also export to ONNX and serve that: onnx or onnx-int8")
    ] = None,
) -> None:
    """Train a classifier on FILE's labelled rows, evaluate it on held-out rows, serve it at once."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from chains.classify.registry import Registry
    from chains.classify.train import TrainOptions, train_classifier
    from chains.errors import HfchainError

    if method not in ("finetune", "head"):
        raise typer.BadParameter("--method is finetune or head")
    if export not in (None, "onnx", "onnx-int8"):
        raise typer.BadParameter("--export is onnx or onnx-int8")
    settings = _settings()
    _logging("warning")
    options = TrainOptions(
        text_column=text_column, label_column=label_column, base=base, method=method, epochs=epochs,
        max_length=max_length, eval_fraction=eval_fraction, batch_size=batch_size,
        learning_rate=learning_rate, max_rows=settings.train_max_rows, export=export,
    )  # fmt: skip
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}")]
    with Progress(*columns, TimeRemainingColumn(), console=Console(stderr=True)) as progress:
        task = progress.add_task(f"training {name}", total=None, info="reading the file")

        def report(step: dict) -> None:
            if step.get("stage") == "exporting":
                progress.update(task, info=f"exporting to {step['export']}, then comparing runtimes")
                return
            loss = f"loss {step['loss']:.3f}" if step.get("loss") is not None else ""
            accuracy = f"eval accuracy {step['eval_accuracy']:.3f}" if step.get("eval_accuracy") else ""
            info = " ".join(filter(None, [f"epoch {step['epoch']}", loss, accuracy]))
            progress.update(task, completed=step["step"], total=step["max_steps"], info=info)

        try:
            card = train_classifier(file, name, Registry(settings.classifiers_dir), options, report)
        except HfchainError as error:
            typer.secho(error.message, fg="red", err=True)
            raise typer.Exit(2) from None
    _show_card(card, settings.classifiers_dir / name)


def _show_card(card: dict, folder: Path) -> None:
    """The held-out metrics, a line per label."""
    metrics = card["metrics"]
    data = card["data"]
    typer.echo(f"{card['name']}: accuracy {metrics['accuracy']:.3f} on {data['eval_rows']} held-out rows "
               f"(trained on {data['train_rows']} in {card['train_seconds']} s)")  # fmt: skip
    typer.echo(f"{'label':<20} precision  recall  f1     support")
    for label, row in metrics["per_label"].items():
        typer.echo(
            f"{label:<20} {row['precision']:.3f}      {row['recall']:.3f}   {row['f1']:.3f}  {row['support']}"
        )
    _show_runtimes(card)
    typer.echo(f'saved to {folder}; served by /classify with "model": "{card["name"]}"', err=True)


def _show_runtimes(card: dict) -> None:
    """Torch vs ONNX (vs int8) on the held-out rows, after an export."""
    onnx = card.get("onnx")
    if not onnx:
        return
    typer.echo(f"runtimes on {onnx['compared_on']} held-out rows (exported in {onnx['export_seconds']} s):")
    typer.echo(f"{'runtime':<12} accuracy  texts/s")
    for runtime, row in onnx["runtimes"].items():
        mark = "  <- serving" if runtime == card.get("runtime") else ""
        typer.echo(f"{runtime:<12} {row['accuracy']:.3f}     {row['texts_per_s']:<8}{mark}")


@app.command("export-onnx")
def export_onnx(
    name: Annotated[str, typer.Argument(help="A trained classifier, a configured one, or a hub id / folder")],
    int8: Annotated[bool, typer.Option(help="Also quantize to int8 and serve that")] = False,
    output: Annotated[
        Path | None, typer.Option(help="Folder to write (required unless NAME is a trained classifier)")
    ] = None,
    remove: Annotated[bool, typer.Option(help="Delete a trained classifier's graphs: torch again")] = False,
) -> None:
    """Export a classifier to ONNX (onnxruntime then serves it), comparing accuracy and speed to torch."""
    from chains.classify.checkpoint import parse_classifiers
    from chains.classify.export import export_trained, unexport_trained
    from chains.classify.registry import Registry
    from chains.errors import HfchainError

    settings = _settings()
    _logging("warning")
    registry = Registry(settings.classifiers_dir)
    try:
        if remove:
            unexport_trained(registry, name)
            typer.echo(f"{name}: ONNX graphs removed, served by torch again")
        elif output is None:
            with Console(stderr=True).status(f"exporting {name} to ONNX, then comparing runtimes"):
                card = export_trained(registry, name, int8)
            _show_runtimes(card)
        else:
            trained = name in registry.names()
            source = str(registry.path(name)) if trained else name
            source = parse_classifiers(settings.classifier).get(name, source)
            _write_onnx_folder(source, output, int8)
    except HfchainError as error:
        typer.secho(error.message, fg="red", err=True)
        raise typer.Exit(2) from None


def _write_onnx_folder(source: str, output: Path, int8: bool) -> None:
    """A self-contained ONNX classifier folder to serve through HFCHAIN_CLASSIFIER."""
    from chains.classify.export import export_folder

    with Console(stderr=True).status(f"exporting {source} to ONNX"):
        written = export_folder(source, output, int8)
    typer.echo(f"wrote {', '.join(written['runtimes'])} to {output} in {written['export_seconds']} s; "
               f"serve it with HFCHAIN_CLASSIFIER={output.name}={output}")  # fmt: skip


def _run_classify(chain, value: dict) -> dict:
    from pydantic import ValidationError

    from chains.errors import HfchainError

    try:
        return chain.invoke(value)
    except (ValidationError, HfchainError) as error:
        typer.secho(str(error), fg="red", err=True)
        raise typer.Exit(2) from None


def _classify_file(chain, base: dict, file: Path, output: Path, batch: int = 16) -> None:
    """Classify the file's rows in batches with a progress bar; write one JSON line per row."""
    import json

    from rich.progress import Progress

    rows = _read_rows(file)
    with output.open("w", encoding="utf-8") as sink, Progress(console=Console(stderr=True)) as progress:
        task = progress.add_task(f"classifying {file.name}", total=len(rows))
        for start in range(0, len(rows), batch):
            part = rows[start : start + batch]
            results = chain.batch([{**base, "text": row["text"]} for row in part])
            for row, result in zip(part, results, strict=True):
                sink.write(json.dumps({**row, **result}, ensure_ascii=False) + "\n")
            progress.advance(task, len(part))
    typer.echo(f"wrote {len(rows)} results to {output}", err=True)


def _read_rows(file: Path) -> list[dict]:
    """Rows with a 'text' field from a CSV (header with a 'text' column) or a JSONL file."""
    import csv
    import json

    with file.open(encoding="utf-8", newline="") as handle:
        if file.suffix.lower() in {".jsonl", ".ndjson"}:
            rows = [json.loads(line) for line in handle if line.strip()]
        else:
            rows = list(csv.DictReader(handle))
    if not rows or any(not isinstance(r, dict) or not str(r.get("text") or "").strip() for r in rows):
        raise typer.BadParameter(f"{file}: every row needs a non-empty 'text' field")
    return rows


def _read_line() -> str | None:
    try:
        return input("you> ")
    except EOFError:
        return None


keys_app = typer.Typer(help="API keys: one per person or app, each in a tenant.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _key_store():
    import logging

    from chains.errors import HfchainError
    from chains.tenants.keys import KeyStore

    settings = _settings()
    _logging("warning")
    logging.getLogger("hfchain.audit").setLevel(logging.INFO)  # the CLI's changes are audited too
    try:
        from chains.database import Database

        return KeyStore(
            Database(settings.sessions_database, connect_timeout=settings.sessions_connect_timeout)
        )
    except HfchainError as error:
        typer.secho(error.message, fg="red", err=True)
        raise typer.Exit(2) from None


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="The key's name (in usage, metrics and logs)")],
    scope: Annotated[str, typer.Option(help="inference, user or admin")] = "user",
    tenant: Annotated[str | None, typer.Option(help="Whose data it reaches (default: NAME)")] = None,
    requests_per_minute: Annotated[int | None, typer.Option(help="Counted (POST) requests a minute")] = None,
    tokens_per_day: Annotated[int | None, typer.Option(help="Prompt + completion tokens a UTC day")] = None,
) -> None:
    """Make a key and print it, alone, on stdout (KEY=$(hfchain keys create alice)); it is not shown again."""
    from chains.errors import HfchainError
    from chains.tenants.audit import audit

    store = _key_store()
    try:
        secret, record = store.create(name, scope, tenant, requests_per_minute, tokens_per_day)  # type: ignore[arg-type]
    except HfchainError as error:
        typer.secho(error.message, fg="red", err=True)
        raise typer.Exit(2) from None
    audit("key.created", None, record["tenant"], name=name, scope=record["scope"], by="cli")
    typer.echo(secret)
    typer.echo(
        f"key {name!r} (scope {record['scope']}, tenant {record['tenant']}): keep it now, it is not shown "
        "again",
        err=True,
    )


@keys_app.command("list")
def keys_list() -> None:
    """Every key made here, revoked ones too (never a secret)."""
    from rich.table import Table

    rows = _key_store().list()
    table = Table("name", "tenant", "scope", "req/min", "tokens/day", "key", "created", "revoked")
    for row in rows:
        limits = [str(row[k]) if row[k] else "-" for k in ("requests_per_minute", "tokens_per_day")]
        created, revoked = (_minute(row["created_at"]), _minute(row["revoked_at"]) or "-")
        table.add_row(row["name"], row["tenant"], row["scope"], *limits, row["hint"], created, revoked)
    Console().print(table if rows else "no keys yet: hfchain keys create NAME")


def _minute(moment: str | None) -> str | None:
    """2026-12-02T16:56:49+00:00 -> 2026-12-02 16:56 (UTC)."""
    return moment[:16].replace("T", " ") if moment else None


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name")]) -> None:
    """Refuse the key from now on (every replica within HFCHAIN_KEYS_CACHE_SECONDS)."""
    from chains.errors import HfchainError
    from chains.tenants.audit import audit

    try:
        record = _key_store().revoke(name)
    except HfchainError as error:
        typer.secho(error.message, fg="red", err=True)
        raise typer.Exit(2) from None
    audit("key.revoked", None, record["tenant"], name=name, by="cli")
    typer.echo(f"revoked key {name!r} (tenant {record['tenant']})", err=True)


app.command("ingest")(ingest)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `hfchain` console script."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="hfchain")
