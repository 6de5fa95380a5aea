"""Train a classifier from a labelled file (datasets + Trainer) and register it for /classify.

finetune: the whole encoder with a classification head; head: the encoder frozen, only its pooler and the
head trained (seconds, for small data). The packaged MiniLM is the default base; any hub id or folder works.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from chains.classify.registry import EVAL, Registry, check_name
from chains.errors import InvalidInput

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".ndjson": "json", ".parquet": "parquet"}
Progress = Callable[[dict[str, Any]], None]
EVAL_KEPT = 2000  # held-out rows kept with the classifier (to compare runtimes after an export)


@dataclass
class TrainOptions:
    """How to read the file and train (the CLI's and POST /classifiers' options)."""

    text_column: str = "text"
    label_column: str = "label"
    base: str | None = None  # None: the packaged MiniLM encoder
    method: Literal["finetune", "head"] = "finetune"
    epochs: float = 3.0
    max_length: int = 128
    eval_fraction: float = 0.1
    batch_size: int = 16
    learning_rate: float | None = None  # None: 5e-5 for finetune, 1e-3 for head
    seed: int = 0
    max_rows: int | None = None
    export: Literal["onnx", "onnx-int8"] | None = None  # also write (and serve) an ONNX graph


@dataclass
class Rows:
    """The file's texts and label names, checked."""

    texts: list[str]
    labels: list[str]
    names: list[str]  # the label set, in order (id i = names[i])


def load_rows(path: Path, options: TrainOptions) -> Rows:
    """The file's rows through `datasets.load_dataset`; 422 naming the fix for anything unusable."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InvalidInput(f"{path.name}: give a .csv, .jsonl or .parquet file")
    from datasets import disable_progress_bars, load_dataset

    disable_progress_bars()  # the caller shows progress its own way

    with tempfile.TemporaryDirectory(prefix="hfchain-data-") as cache:
        try:
            data = load_dataset(kind, data_files=str(path), split="train", cache_dir=cache)
        except Exception as error:  # datasets raises many types for a file that does not parse
            raise InvalidInput(
                f"{path.name} does not parse as {kind}: {error.__class__.__name__}: {error}"
            ) from None
        missing = [c for c in (options.text_column, options.label_column) if c not in data.column_names]
        if missing:
            raise InvalidInput(
                f"{path.name} has no column {', '.join(map(repr, missing))}: its columns are "
                f"{data.column_names} (choose them with --text-column / --label-column)"
            )
        names = getattr(data.features[options.label_column], "names", None)  # a ClassLabel column
        texts, raw = data[options.text_column], data[options.label_column]
    labels = [
        names[v] if names and isinstance(v, int) else ("" if v is None else str(v)).strip() for v in raw
    ]
    return check_rows([("" if t is None else str(t)) for t in texts], labels, options.max_rows)


def check_rows(texts: list[str], labels: list[str], max_rows: int | None = None) -> Rows:
    """Rows a classifier can learn from: texts and labels present, two labels or more, each twice."""
    if max_rows is not None and len(texts) > max_rows:
        raise InvalidInput(f"{len(texts)} rows, more than the {max_rows} allowed (HFCHAIN_TRAIN_MAX_ROWS)")
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        raise InvalidInput(f"{len(empty)} rows have an empty text (first: row {empty[0] + 1}): remove them")
    unlabelled = [i for i, label in enumerate(labels) if not label]
    if unlabelled:
        raise InvalidInput(
            f"{len(unlabelled)} rows have no label (first: row {unlabelled[0] + 1}): label them"
        )
    counts = Counter(labels)
    if len(counts) < 2:
        raise InvalidInput(f"every row has the label {labels[0]!r}: a classifier needs two labels or more")
    rare = sorted(label for label, n in counts.items() if n < 2)
    if rare:
        raise InvalidInput(f"labels with a single row cannot be split for evaluation: {rare}; add rows")
    return Rows(texts, labels, sorted(counts))


def split(rows: Rows, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified (train, eval) row indices; every label is in both."""
    from sklearn.model_selection import train_test_split

    count = max(len(rows.names), round(len(rows.texts) * fraction))
    if count >= len(rows.texts):
        raise InvalidInput(f"{len(rows.texts)} rows are too few to hold out {count} for evaluation: add rows")
    indices = list(range(len(rows.texts)))
    train, held = train_test_split(indices, test_size=count, stratify=rows.labels, random_state=seed)
    return sorted(train), sorted(held)


def file_hash(path: Path) -> str:
    """sha256 of the training file (for the card)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def evaluation(truth: list[int], predicted: list[int], names: list[str]) -> dict[str, Any]:
    """Accuracy, per-label precision / recall / F1 / support, and the confusion matrix (rows: truth)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    ids = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=ids, zero_division=0
    )
    per_label = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(names, precision, recall, f1, support, strict=True)
    }
    accuracy = sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(truth)
    matrix = confusion_matrix(truth, predicted, labels=ids).tolist()
    return {"accuracy": accuracy, "per_label": per_label, "confusion_matrix": matrix}


def train_classifier(
    path: Path, name: str, registry: Registry, options: TrainOptions, progress: Progress | None = None
) -> dict[str, Any]:
    """Train on the file, evaluate on a held-out split, register the classifier; its card."""
    check_name(name)
    if registry.card(name) is not None:
        raise InvalidInput(f"a classifier named {name!r} exists: pick another name or delete it first")
    rows = load_rows(Path(path), options)
    train_ids, eval_ids = split(rows, options.eval_fraction, options.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hfchain-train-") as scratch:  # the Trainer's checkpoints
        trainer, tokenizer = _trainer(rows, train_ids, eval_ids, options, progress, scratch)
        trainer.train()
        predicted = trainer.predict(trainer.eval_dataset).predictions.argmax(-1).tolist()
    truth = [rows.names.index(rows.labels[i]) for i in eval_ids]
    metrics = evaluation(truth, predicted, rows.names)
    card = {
        "labels": rows.names,
        "base": options.base or "all-MiniLM-L6-v2 (packaged)",
        "method": options.method,
        "data": {"file": Path(path).name, "sha256": file_hash(Path(path)), "rows": len(rows.texts),
                 "train_rows": len(train_ids), "eval_rows": len(eval_ids)},
        "options": asdict(options),
        "metrics": metrics,
        "train_seconds": round(time.perf_counter() - started, 1),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip

    def write(folder: Path) -> None:
        trainer.save_model(str(folder))
        tokenizer.save_pretrained(str(folder))
        held = [(rows.texts[i], rows.labels[i]) for i in eval_ids[:EVAL_KEPT]]
        lines = [json.dumps({"text": text, "label": label}) + "\n" for text, label in held]
        (folder / EVAL).write_text("".join(lines), encoding="utf-8")
        if options.export:  # inside the scratch folder: the classifier appears with its graphs, or not
            from chains.classify.export import export_into

            if progress:
                progress({"stage": "exporting", "export": options.export})
            card.update(export_into(folder, held[:1000], int8=options.export == "onnx-int8"))

    card["runtime"] = "torch"
    registry.save(name, write, card)
    log.info(
        "classifier %r trained: accuracy %.3f on %d held-out rows", name, metrics["accuracy"], len(eval_ids)
    )
    return registry.card(name)


def _trainer(
    rows: Rows, train_ids: list[int], eval_ids: list[int], options: TrainOptions, progress, scratch: str
):
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        PrinterCallback,
        Trainer,
        TrainingArguments,
    )
    from transformers.utils import logging as hf_logging

    base = options.base or _packaged_encoder()
    hf_logging.disable_progress_bar()  # its bars (loading, saving shards) would break the caller's own
    tokenizer = AutoTokenizer.from_pretrained(base)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report says the new head is untrained: that is the point
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            base,
            num_labels=len(rows.names),
            id2label=dict(enumerate(rows.names)),
            label2id={n: i for i, n in enumerate(rows.names)},
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    if options.method == "head":
        _freeze_encoder(model)

    def dataset(ids: list[int]) -> Any:
        data = Dataset.from_dict(
            {"text": [rows.texts[i] for i in ids], "label": [rows.names.index(rows.labels[i]) for i in ids]}
        )
        return data.map(
            lambda batch: tokenizer(batch["text"], truncation=True, max_length=options.max_length),
            batched=True,
            remove_columns=["text"],
        )

    rate = options.learning_rate or (1e-3 if options.method == "head" else 5e-5)
    arguments = TrainingArguments(
        output_dir=scratch,
        num_train_epochs=options.epochs,
        per_device_train_batch_size=options.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=rate,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        logging_steps=max(1, len(train_ids) // options.batch_size // 10),
        report_to=[],
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
        seed=options.seed,
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=dataset(train_ids),
        eval_dataset=dataset(eval_ids),
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=_accuracy,
        callbacks=[_reporter(progress)] if progress else [],
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout
    return trainer, tokenizer


def _packaged_encoder() -> str:
    from chains.backends.encoder import encoder_folder

    return str(encoder_folder())


def _freeze_encoder(model: Any) -> None:
    """Only the head (and the pooler feeding it, if any) learns."""
    for name, parameter in model.named_parameters():
        parameter.requires_grad = "classifier" in name or "pooler" in name or "score" in name


def _accuracy(prediction: Any) -> dict[str, float]:
    predicted = prediction.predictions.argmax(-1)
    return {"accuracy": float((predicted == prediction.label_ids).mean())}


def _reporter(progress: Progress) -> Any:
    """A TrainerCallback passing the Trainer's progress (step, epoch, loss, eval accuracy) on."""
    from transformers import TrainerCallback

    class Reporter(TrainerCallback):
        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any
        ) -> None:
            logs = logs or {}
            progress(
                {
                    "step": state.global_step,
                    "max_steps": state.max_steps,
                    "epoch": round(state.epoch or 0, 2),
                    "loss": logs.get("loss"),
                    "eval_accuracy": logs.get("eval_accuracy"),
                }
            )

    return Reporter()
