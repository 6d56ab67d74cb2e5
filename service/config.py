"""Server settings, read once from the environment and validated before anything starts."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from contract.server_env import read_bool
from service.limits import MAX_CONNECTION_AGE_GRACE_MS, ConnectionLimits

_T = TypeVar("_T")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Cloud Run's per-instance concurrency goes up to 1000; the limit here mirrors it.
MAX_CONCURRENCY = 1000
# Cloud Run sends SIGKILL 10 s after SIGTERM: a longer grace would be cut short.
MAX_SHUTDOWN_GRACE_SECONDS = 9.0
# A stream that sends nothing for this long is cancelled (service/stalls.py), at most 1.25 times this later.
# At least a second, so a slow but live reader is never cut off. At most 45 s, so that is always before the
# connection age grace (60 s, service/limits.py) runs out: the grace is for stalled streams, and the
# watchdog, not the closing connection, is what ends them and says why in the log.
MIN_STALLED_STREAM_SECONDS = 1.0
MAX_STALLED_STREAM_SECONDS = 45.0
# How long the server may keep retrying an unreadable catalog file: at most a Cloud Run startup probe's
# longest window (failure threshold x period <= 240 s). The Pulumi program sets less than its own probe's.
MAX_CATALOG_READ_TIMEOUT_SECONDS = 240.0
# Server processes on one instance: Cloud Run's largest instance has 8 vCPUs; more would only contend.
MAX_PROCESSES = 8
_AGE_GRACE_SECONDS = MAX_CONNECTION_AGE_GRACE_MS / 1000
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Telemetry (service/telemetry.py). "auto": Google Cloud's exporter on Cloud Run, none elsewhere.
METRICS_EXPORTERS = ("auto", "gcp", "console", "prometheus", "none")
TRACE_EXPORTERS = ("auto", "gcp", "console", "none")
# Cloud Monitoring takes a point per series at most every 5 s; 10 s leaves room for a late export.
MIN_METRICS_EXPORT_SECONDS = 10.0
MAX_METRICS_EXPORT_SECONDS = 300.0


class ConfigError(ValueError):
    """An environment variable has a value the server cannot run with."""


@dataclass(frozen=True)
class Settings:
    """How the server runs. Defaults suit Cloud Run; `from_env` reads the documented variables."""

    port: int = 8080
    catalog_path: str | None = None  # a str, not a Path: pathlib alone is 5% of start-up
    enable_reflection: bool = False
    max_concurrent_rpcs: int = 80
    shutdown_grace_seconds: float = 8.0
    log_level: str = "INFO"
    project_id: str | None = None
    # 30 s: a reader on the slowest live network takes milliseconds per message; a stalled one never does.
    stalled_stream_seconds: float = 30.0
    # The file's expected digest (hex): other bytes are an incomplete read, retried, never served.
    catalog_sha256: str | None = None
    # How long to keep retrying a catalog file that cannot be read (a Cloud Storage mount warming up);
    # 0 reads once.
    catalog_read_timeout_seconds: float = 0.0
    # Where metrics go, and how often (docs/observability.md says why a minute).
    metrics_exporter: str = "auto"
    metrics_export_seconds: float = 60.0
    prometheus_port: int = 9464
    # Where traces go, and the share of calls traced when the caller did not sample them itself.
    trace_exporter: str = "auto"
    trace_sample_rate: float = 0.001
    # The share of OK calls that get an access line; every other call always gets one.
    ok_log_sample_rate: float = 0.01
    # Server processes sharing the port (service/processes.py); None: one per CPU of the container's quota.
    processes: int | None = None
    # Not read from the environment: set in each of several processes sharing the port (SO_REUSEPORT).
    reuse_port: bool = False
    # Not read from the environment: the tests shorten them to watch each limit act (service/limits.py).
    connection_limits: ConnectionLimits = field(default_factory=ConnectionLimits)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from environment variables; raise ConfigError naming the first bad one."""
        defaults = cls()
        catalog_path = env.get("CATALOG_PATH", "").strip()
        return cls(
            port=_read(env, "PORT", defaults.port, _parse_port),
            catalog_path=catalog_path or None,
            enable_reflection=_read(env, "ENABLE_REFLECTION", defaults.enable_reflection, _parse_bool),
            max_concurrent_rpcs=_read(
                env, "MAX_CONCURRENT_RPCS", defaults.max_concurrent_rpcs, _parse_concurrency
            ),
            shutdown_grace_seconds=_read(
                env, "SHUTDOWN_GRACE_SECONDS", defaults.shutdown_grace_seconds, _parse_grace
            ),
            log_level=_read(env, "LOG_LEVEL", defaults.log_level, _parse_log_level),
            project_id=env.get("GOOGLE_CLOUD_PROJECT", "").strip() or None,
            stalled_stream_seconds=_read(
                env, "STALLED_STREAM_SECONDS", defaults.stalled_stream_seconds, _parse_stalled_seconds
            ),
            catalog_sha256=_read(env, "CATALOG_SHA256", defaults.catalog_sha256, _parse_sha256),
            catalog_read_timeout_seconds=_read(
                env,
                "CATALOG_READ_TIMEOUT_SECONDS",
                defaults.catalog_read_timeout_seconds,
                _parse_read_timeout,
            ),
            metrics_exporter=_read(
                env, "METRICS_EXPORTER", defaults.metrics_exporter, _choice(METRICS_EXPORTERS)
            ),
            metrics_export_seconds=_read(
                env, "METRICS_EXPORT_SECONDS", defaults.metrics_export_seconds, _parse_export_seconds
            ),
            prometheus_port=_read(env, "PROMETHEUS_PORT", defaults.prometheus_port, _parse_port),
            trace_exporter=_read(env, "TRACE_EXPORTER", defaults.trace_exporter, _choice(TRACE_EXPORTERS)),
            trace_sample_rate=_read(env, "TRACE_SAMPLE_RATE", defaults.trace_sample_rate, _parse_share),
            ok_log_sample_rate=_read(env, "OK_LOG_SAMPLE_RATE", defaults.ok_log_sample_rate, _parse_share),
            processes=_read(env, "SERVER_PROCESSES", defaults.processes, _parse_processes),
        )

    @property
    def log_level_number(self) -> int:
        """The `logging` module's number for `log_level`."""
        return logging.getLevelName(self.log_level)  # type: ignore[no-any-return]


def _read(env: Mapping[str, str], name: str, default: _T, parse: Callable[[str], _T]) -> _T:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw.strip())
    except ValueError as error:
        raise ConfigError(f"{name}={raw!r} is invalid: {error}") from None


def _parse_int(raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"expected a whole number from {low} to {high}") from None
    if not low <= value <= high:
        raise ValueError(f"expected a whole number from {low} to {high}")
    return value


def _parse_port(raw: str) -> int:
    # 0 asks the OS for a free port (tests); Cloud Run always sets a real one.
    return _parse_int(raw, 0, 65535)


def _parse_processes(raw: str) -> int:
    return _parse_int(raw, 1, MAX_PROCESSES)


def _parse_concurrency(raw: str) -> int:
    return _parse_int(raw, 1, MAX_CONCURRENCY)


def _parse_bool(raw: str) -> bool:
    value = read_bool(raw)
    if value is None:
        raise ValueError("expected true or false")
    return value


def _parse_grace(raw: str) -> float:
    return _parse_seconds(raw, 0, MAX_SHUTDOWN_GRACE_SECONDS, "Cloud Run kills at 10")


def _parse_stalled_seconds(raw: str) -> float:
    return _parse_seconds(
        raw,
        MIN_STALLED_STREAM_SECONDS,
        MAX_STALLED_STREAM_SECONDS,
        f"a stalled stream is cancelled before the connection age grace of {_AGE_GRACE_SECONDS:g} s ends",
    )


def _parse_seconds(raw: str, low: float, high: float, note: str = "") -> float:
    """A finite number of seconds from `low` to `high`; `note` says why in the error, if given."""
    allowed = f"expected seconds from {low:g} to {high:g}" + (f" ({note})" if note else "")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(allowed) from None
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(allowed)
    return value


def _parse_read_timeout(raw: str) -> float:
    return _parse_seconds(raw, 0, MAX_CATALOG_READ_TIMEOUT_SECONDS, "a startup probe's longest window")


def _parse_sha256(raw: str) -> str:
    digest = raw.lower()
    if not _SHA256.fullmatch(digest):
        raise ValueError("expected a SHA-256 digest: 64 hexadecimal digits")
    return digest


def _parse_export_seconds(raw: str) -> float:
    return _parse_seconds(
        raw,
        MIN_METRICS_EXPORT_SECONDS,
        MAX_METRICS_EXPORT_SECONDS,
        "Cloud Monitoring takes a point per series at most every 5 s",
    )


def _parse_share(raw: str) -> float:
    """A share from 0 to 1 (0.01 is one in a hundred)."""
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("expected a share from 0 to 1 (0.01 is one call in a hundred)") from None
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise ValueError("expected a share from 0 to 1 (0.01 is one call in a hundred)")
    return value


def _choice(allowed: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.lower()
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value

    return parse


def _parse_log_level(raw: str) -> str:
    level = raw.upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
    return level
