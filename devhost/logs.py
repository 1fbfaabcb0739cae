"""One JSON object per line on stderr, for the host's own events and the app's log records."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

HOST_LOGGER = "devhost"
# Set while an invocation runs, so the app's own log lines carry the invocation they belong to.
current_invocation: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "current_invocation", default=None
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
        }
        fields = getattr(record, "fields", None)
        if record.name.startswith(HOST_LOGGER) and fields is not None:
            line["event"] = record.getMessage()
        else:
            line["event"] = "app.log"
            line["logger"] = record.name
            line["message"] = record.getMessage()
        invocation = current_invocation.get()
        if invocation:
            line.update(invocation)
        if fields:
            line.update(fields)
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The Storage SDK logs every HTTP request at INFO; the poll loop would drown everything else.
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)


def log_event(event: str, level: int = logging.INFO, exc_info: bool = False, **fields: Any) -> None:
    logging.getLogger(HOST_LOGGER).log(level, event, exc_info=exc_info, extra={"fields": fields})
