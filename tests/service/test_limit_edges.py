"""The per-connection stream limit at its floor: the call limit plus spares, never under 100."""

from __future__ import annotations

import pytest

from service.limits import (
    MIN_STREAMS_PER_CONNECTION,
    ConnectionLimits,
    server_options,
    streams_per_connection,
)


@pytest.mark.parametrize(
    ("calls", "spare", "streams"),
    [(1, 0, 100), (90, 9, 100), (90, 10, 100), (90, 11, 101), (1000, 20, 1020), (0, 0, 100)],
)
def test_streams_per_connection_is_calls_plus_spares_from_100_up(
    calls: int, spare: int, streams: int
) -> None:
    assert MIN_STREAMS_PER_CONNECTION == 100
    assert streams_per_connection(calls, spare) == streams


def test_every_connection_limit_reaches_its_grpc_option() -> None:
    # Distinct values, so an option fed from the wrong field shows.
    limits = ConnectionLimits(idle_ms=1, age_ms=2, age_grace_ms=3, handshake_timeout_ms=4)
    options = dict(server_options(200, 5, limits))
    assert options["grpc.max_concurrent_streams"] == 205
    assert [
        options["grpc.max_connection_idle_ms"],
        options["grpc.max_connection_age_ms"],
        options["grpc.max_connection_age_grace_ms"],
        options["grpc.server_handshake_timeout_ms"],
    ] == [1, 2, 3, 4]
    assert len(options) == len(server_options(200, 5, limits))  # no option given twice
