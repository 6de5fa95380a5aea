"""Trained classifiers on disk: HFCHAIN_DATA_DIR/classifiers/NAME holds the model (save_pretrained) and
its card.json (base, data, labels, metrics, date). Written atomically: a classifier appears whole or not
at all."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chains.errors import InvalidInput, NotFound
from chains.tenants.caller import DEFAULT_TENANT

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
NAME_HELP = "1-64 characters: letters, digits and . _ - (starting with a letter or digit)"
CARD = "card.json"
EVAL = "eval.jsonl"  # the held-out rows, to compare runtimes on later


def check_name(name: str) -> str:
    """The name, if it can name a classifier (422 otherwise)."""
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
        raise InvalidInput(f"classifier name {name!r}: {NAME_HELP}")
    return name


class Registry:
    """The trained classifiers under `root`; read from disk on every call, so a running server sees a
    classifier as soon as its training finishes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def tenant(self, tenant: str) -> Registry:
        """The registry of a tenant's own classifiers: ROOT for the default tenant, ROOT/@TENANT for others
        (a folder no classifier name can take)."""
        return self if tenant == DEFAULT_TENANT else Registry(self.root / f"@{tenant}")

    def path(self, name: str) -> Path:
        """The folder of classifier `name` (which may not exist)."""
        return self.root / check_name(name)

    def card(self, name: str) -> dict[str, Any] | None:
        """The classifier's card, or None when there is no such classifier."""
        try:
            return json.loads((self.path(name) / CARD).read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def names(self) -> list[str]:
        """Every trained classifier, by name."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if (p / CARD).is_file() and re.match(NAME_PATTERN, p.name)
        )

    def describe(self) -> list[dict[str, Any]]:
        """Every classifier's card (what GET /classifiers lists)."""
        return [card for name in self.names() if (card := self.card(name)) is not None]

    def save(self, name: str, write: Callable[[Path], None], card: dict[str, Any]) -> Path:
        """Write a classifier in a scratch folder, then move it into place in one step (422 if taken)."""
        target = self.path(name)
        if target.exists():
            raise InvalidInput(f"a classifier named {name!r} exists: pick another name or delete it first")
        scratch = self.root / f".partial-{name}-{uuid.uuid4().hex[:8]}"
        scratch.mkdir(parents=True)
        try:
            write(scratch)
            (scratch / CARD).write_text(json.dumps({**card, "name": name}, indent=2), encoding="utf-8")
            os.rename(scratch, target)  # atomic on one filesystem; fails if the name was taken meanwhile
        except OSError as error:
            shutil.rmtree(scratch, ignore_errors=True)
            if target.exists():
                raise InvalidInput(f"a classifier named {name!r} exists: pick another name") from None
            raise error
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return target

    def update_card(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge `changes` into a card (None removes a key), replacing the file in one step."""
        card = self.card(name)
        if card is None:
            raise NotFound(f"no classifier named {name!r}")
        card = {k: v for k, v in {**card, **changes}.items() if v is not None}
        fresh = self.path(name) / f".{CARD}-{uuid.uuid4().hex[:8]}"
        fresh.write_text(json.dumps(card, indent=2), encoding="utf-8")
        os.replace(fresh, self.path(name) / CARD)
        return card

    def eval_rows(self, name: str) -> list[tuple[str, str]]:
        """The (text, label) rows held out when the classifier was trained ([] if not kept)."""
        try:
            lines = (self.path(name) / EVAL).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [(row["text"], row["label"]) for row in map(json.loads, lines)]

    def delete(self, name: str) -> None:
        """Remove a classifier (404 when there is none)."""
        if self.card(name) is None:
            raise NotFound(f"no classifier named {name!r}")
        doomed = self.root / f".deleted-{name}-{uuid.uuid4().hex[:8]}"
        os.rename(self.path(name), doomed)  # gone for readers at once, then removed
        shutil.rmtree(doomed, ignore_errors=True)
