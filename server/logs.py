"""Logging for the server: text or JSON lines, each with the replica id and the request id."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from server.errors import request_id_var

FIELDS = ("method", "path", "route", "status", "duration_ms")


class RequestIdFilter(logging.Filter):
    """Adds the replica id and the current request id to every record (unless it brings its own)."""

    def __init__(self, replica: str = "-") -> None:
        super().__init__()
        self.replica = replica

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        record.replica = self.replica
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, and any request fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "replica": getattr(record, "replica", "-"),
            "request_id": getattr(record, "request_id", "-"),
            **{k: getattr(record, k) for k in FIELDS if hasattr(record, k)},
        }
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure_logging(level: str, fmt: str = "text", replica: str = "-") -> None:
    """Root logging to stderr in the chosen format, with the replica and request ids."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter(replica))
    text = "%(asctime)s %(levelname)s %(name)s [%(replica)s %(request_id)s] %(message)s"
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(text))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
