"""Environment variables: defaults, accepted spellings, and a clear error naming each bad one."""

from __future__ import annotations

import pytest

from service.config import MAX_STALLED_STREAM_SECONDS, ConfigError, Settings
from service.limits import MAX_CONNECTION_AGE_GRACE_MS
from service.stalls import StallWatchdog


def test_defaults_suit_cloud_run() -> None:
    assert Settings.from_env({}) == Settings(
        port=8080,
        catalog_path=None,
        enable_reflection=False,
        max_concurrent_rpcs=80,
        shutdown_grace_seconds=8.0,
        log_level="INFO",
        project_id=None,
        stalled_stream_seconds=30.0,
        catalog_sha256=None,
        catalog_read_timeout_seconds=0.0,
    )


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "PORT": "9000",
            "CATALOG_PATH": "/data/catalog.json",
            "ENABLE_REFLECTION": "TRUE",
            "MAX_CONCURRENT_RPCS": "250",
            "SHUTDOWN_GRACE_SECONDS": "2.5",
            "LOG_LEVEL": "debug",
            "GOOGLE_CLOUD_PROJECT": "my-project",
            "STALLED_STREAM_SECONDS": "45",
            "CATALOG_SHA256": "AB" * 32,
            "CATALOG_READ_TIMEOUT_SECONDS": "15",
        }
    )
    assert settings == Settings(
        9000, "/data/catalog.json", True, 250, 2.5, "DEBUG", "my-project", 45.0, "ab" * 32, 15.0
    )


@pytest.mark.parametrize("raw", ["", "  "])
def test_empty_values_mean_the_default(raw: str) -> None:
    assert Settings.from_env({"PORT": raw, "ENABLE_REFLECTION": raw, "CATALOG_PATH": raw}) == Settings()


@pytest.mark.parametrize(
    ("name", "raw", "allowed"),
    [
        ("PORT", "http", "whole number from 0 to 65535"),
        ("PORT", "70000", "whole number from 0 to 65535"),
        ("PORT", "-1", "whole number from 0 to 65535"),
        ("ENABLE_REFLECTION", "yes please", "true or false"),
        ("MAX_CONCURRENT_RPCS", "0", "whole number from 1 to 1000"),
        ("MAX_CONCURRENT_RPCS", "1001", "whole number from 1 to 1000"),
        ("MAX_CONCURRENT_RPCS", "8.5", "whole number from 1 to 1000"),
        ("SHUTDOWN_GRACE_SECONDS", "10", "seconds from 0 to 9"),
        ("SHUTDOWN_GRACE_SECONDS", "-1", "seconds from 0 to 9"),
        ("SHUTDOWN_GRACE_SECONDS", "nan", "seconds from 0 to 9"),
        ("LOG_LEVEL", "LOUD", "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("STALLED_STREAM_SECONDS", "0.5", "seconds from 1 to 45"),
        (
            "STALLED_STREAM_SECONDS",
            "46",
            "from 1 to 45 (a stalled stream is cancelled before the connection age grace of 60 s ends)",
        ),
        ("STALLED_STREAM_SECONDS", "inf", "seconds from 1 to 45"),
        ("STALLED_STREAM_SECONDS", "soon", "seconds from 1 to 45"),
        ("CATALOG_SHA256", "abc", "64 hexadecimal digits"),
        ("CATALOG_SHA256", "g" * 64, "64 hexadecimal digits"),
        ("CATALOG_READ_TIMEOUT_SECONDS", "-1", "seconds from 0 to 240"),
        ("CATALOG_READ_TIMEOUT_SECONDS", "241", "seconds from 0 to 240"),
        ("CATALOG_READ_TIMEOUT_SECONDS", "soon", "seconds from 0 to 240"),
        ("CATALOG_READ_TIMEOUT_SECONDS", "inf", "seconds from 0 to 240"),
    ],
)
def test_invalid_value_names_the_variable_the_value_and_what_is_allowed(
    name: str, raw: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({name: raw})
    assert str(raised.value).startswith(f"{name}={raw!r} is invalid")
    assert allowed in str(raised.value)


def test_the_longest_stall_bound_ends_before_the_connection_age_grace() -> None:
    # The watchdog cancels a stream up to one check interval after the bound; the grace must outlast that.
    latest = MAX_STALLED_STREAM_SECONDS * (1 + 1 / StallWatchdog.CHECKS_PER_BOUND)
    assert latest < MAX_CONNECTION_AGE_GRACE_MS / 1000
    Settings.from_env({"STALLED_STREAM_SECONDS": f"{MAX_STALLED_STREAM_SECONDS:g}"})
