"""Structured logs as Cloud Logging reads them: one JSON object per line on stdout."""

from __future__ import annotations

import asyncio
import json
import json.encoder
import logging
import re
import sys
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

TRACE_FIELD = "logging.googleapis.com/trace"

_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/|$)")  # x-cloud-trace-context: TRACE_ID/SPAN_ID;o=1
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")  # W3C


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object with `severity`, `message`, `time` and `logger`."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record; exceptions go into `message` so the error and its traceback stay together."""
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        return json_line(record.levelname, message, record.created, record.name)


def json_line(
    severity: str, message: str, created: float, logger: str, fields: Mapping[str, Any] | None = None
) -> str:
    """One log line as Cloud Logging reads it: the format of every line this server writes.

    `fields` are the extra keys of an access line (AccessLog writes those itself; a test compares).
    """
    entry: dict[str, Any] = {
        "severity": severity,
        "message": message,
        "time": datetime.fromtimestamp(created, UTC).isoformat(timespec="microseconds"),
        "logger": logger,
    }
    entry.update(fields or {})
    return json.dumps(entry, ensure_ascii=False, default=str)


# A JSON string literal, non-ASCII kept as is: what json.dumps(..., ensure_ascii=False) writes for a str.
_quote = json.encoder.encode_basestring


class AccessLog:
    """The access line of each call, written straight to stdout: the same JSON as `json_line` writes.

    A GetProduct call costs the server's event loop about 0.15 ms, and going through `logging` and
    json.dumps for its access line cost a third as much again (measured under load: a LogRecord, the
    formatter, a JSON encoder set up per call, the handler's lock, and a flush per line, each flush a
    system call that hands the GIL to gRPC's threads and waits to get it back). So for this one line
    on the hot path the same text is put together directly (tests/service/test_logs.py checks it
    against `json_line`), and the lines of one turn of the event loop are written and flushed
    together. Levels still come from the logger, so LOG_LEVEL applies as to every other line. Call
    only from the event loop's thread.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._pending: list[str] = []

    def write(
        self, level: int, method: str, code: str, duration_ms: float, *, peer: str, trace: str | None
    ) -> None:
        """Write one call's line (the caller has checked `logger.isEnabledFor(level)`)."""
        now = datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="microseconds")
        trace_field = "" if trace is None else f", {_quote(TRACE_FIELD)}: {_quote(trace)}"
        self._pending.append(
            f'{{"severity": "{logging.getLevelName(level)}", '
            f'"message": {_quote(f"{method} {code} {duration_ms:.2f} ms")}, '
            f'"time": "{now}", "logger": {_quote(self.logger.name)}, '
            f'"method": {_quote(method)}, "code": "{code}", "duration_ms": {round(duration_ms, 3)!r}, '
            f'"peer": {_quote(peer)}{trace_field}}}\n'
        )
        if len(self._pending) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        lines, self._pending = self._pending, []
        sys.stdout.write("".join(lines))
        sys.stdout.flush()


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
