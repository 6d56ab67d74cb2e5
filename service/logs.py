"""Structured logs as Cloud Logging reads them: one JSON object per line on stdout."""

from __future__ import annotations

import asyncio
import json
import json.encoder
import logging
import re
import select
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

    The event loop that runs every call is the server's bottleneck, so this line costs it as little as
    possible (each step measured under load):
    - Not through `logging` and json.dumps: a LogRecord, the formatter, a JSON encoder set up per call,
      the handler's lock and a flush per line cost a third as much again as the call itself. The same
      text is put together directly (tests/service/test_logs.py checks it against `json_line`), with
      the parts that repeat rendered once.
    - Written in batches, FLUSH_SECONDS apart, rather than a write per line or per turn of the loop:
      each write is a system call that hands the GIL to gRPC's threads; batching gave 8% more calls
      per second. `flush` writes what is pending at once, when the server stops.
    Levels still come from the logger, so LOG_LEVEL applies as to every other line. Each server has its
    own; call it only from that server's event loop thread. `close` ends the batching, for when the loop
    may stop before its timer runs.
    """

    FLUSH_SECONDS = 0.02

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._pending: list[str] = []
        # The parts of a line that repeat, rendered once: per (level, method, code), and per second.
        self._heads: dict[tuple[int, str, str], tuple[str, str]] = {}
        self._second = -1
        self._second_text = ""
        self._batching = True
        # The stdout of when the server started: a later swap of sys.stdout (a command run in the same
        # process, with its output captured) must not receive the server's lines.
        self._stream = sys.stdout

    def write(
        self, level: int, method: str, code: str, duration_ms: float, *, peer: str, trace: str | None
    ) -> None:
        """Write one call's line (the caller has checked `logger.isEnabledFor(level)`)."""
        heads = self._heads.get((level, method, code))
        if heads is None:
            heads = self._heads[(level, method, code)] = self._render_heads(level, method, code)
        message_head, fields_head = heads
        trace_field = "" if trace is None else f", {_quote(TRACE_FIELD)}: {_quote(trace)}"
        self._pending.append(
            f'{message_head}{duration_ms:.2f} ms", "time": "{self._now()}"{fields_head}'
            f'{round(duration_ms, 3)!r}, "peer": {_quote(peer)}{trace_field}}}\n'
        )
        if len(self._pending) == 1:  # the first line of a batch (once closed: every line)
            if self._batching:
                asyncio.get_running_loop().call_later(self.FLUSH_SECONDS, self.flush)
            else:
                self.flush()

    def _render_heads(self, level: int, method: str, code: str) -> tuple[str, str]:
        """The line up to the message's duration, and from after the time up to the duration field."""
        message = _quote(f"{method} {code} ")[:-1]  # without the closing quote: the duration follows
        return (
            f'{{"severity": "{logging.getLevelName(level)}", "message": {message}',
            f', "logger": {_quote(self.logger.name)}, "method": {_quote(method)}, '
            f'"code": {_quote(code)}, "duration_ms": ',
        )

    def _now(self) -> str:
        """The current UTC time as `datetime.isoformat` writes it, the date rendered once a second.

        Microseconds are truncated, where datetime rounds them: a line may read 1 us early.
        """
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = datetime.fromtimestamp(second, UTC).isoformat()[:-6]  # without "+00:00"
        return f"{self._second_text}.{int((now - second) * 1_000_000):06d}+00:00"

    def flush(self) -> None:
        """Write the pending lines now, in writes of whole lines of at most PIPE_BUF bytes.

        Several server processes may share one stdout pipe (service/processes.py): a write up to PIPE_BUF
        is atomic, so their lines never interleave mid-line. (Access lines are ASCII: characters = bytes.)
        """
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        chunk: list[str] = []
        size = 0
        for line in lines:
            if chunk and size + len(line) > select.PIPE_BUF:
                self._stream.write("".join(chunk))
                self._stream.flush()
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        self._stream.write("".join(chunk))
        self._stream.flush()

    def close(self) -> None:
        """Write the pending lines now, and every later line as it comes.

        For a stopped server: calls it cancelled may still add their lines as they unwind, and the loop
        that would run the batch's timer may be closing.
        """
        self._batching = False
        self.flush()


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
