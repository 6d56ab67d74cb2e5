"""Structured logs as Cloud Logging reads them: one JSON object per line on stdout."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

TRACE_FIELD = "logging.googleapis.com/trace"
# Log records carry their structured fields under this `extra` key.
FIELDS = "fields"

_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/|$)")  # x-cloud-trace-context: TRACE_ID/SPAN_ID;o=1
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")  # W3C


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object with `severity`, `message`, `time` and its `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record; exceptions go into `message` so the error and its traceback stay together."""
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "logger": record.name,
        }
        if record.exc_info:
            entry["message"] += "\n" + self.formatException(record.exc_info)
        entry.update(getattr(record, FIELDS, {}))
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: int) -> None:
    """Send every log record to stdout as a JSON line, replacing any earlier handlers."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def trace_resource(project_id: str | None, metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """`projects/P/traces/T` for the call's trace header, or None without a project or a valid header."""
    if not project_id:
        return None
    for key, value in metadata:
        if isinstance(value, bytes):
            continue
        if key == "x-cloud-trace-context":
            match = _CLOUD_TRACE.match(value)
        elif key == "traceparent":
            match = _TRACEPARENT.match(value.strip())
        else:
            continue
        if match:
            return f"projects/{project_id}/traces/{match.group(1).lower()}"
    return None
