"""Frame-level attacks, from raw HTTP/2: rapid reset, stream floods, CONTINUATION, PING and SETTINGS
floods, idle connections. The server must survive each with bounded memory while serving others."""

from __future__ import annotations

from bench.rawh2 import ENHANCE_YOUR_CALM
from service.limits import METADATA_HARD_LIMIT_BYTES, MIN_STREAMS_PER_CONNECTION, streams_per_connection
from service.server import SPARE_CALLS
from tests.attack import attackers
from tests.attack.harness import (
    ATTACK_SECONDS,
    MAX_CONCURRENT_RPCS,
    Probe,
    TargetServer,
    assert_unharmed,
    under_attack,
)


def test_rapid_reset(server: TargetServer, probe: Probe) -> None:
    rss = server.rss_mib()
    run = under_attack(probe, attackers.rapid_reset, server.port, ATTACK_SECONDS, 20_000)
    assert run.report["pairs"] >= 2000  # thousands of HEADERS + RST_STREAM pairs
    assert_unharmed(server, probe, run, rss)


def test_more_concurrent_streams_than_allowed_are_refused(server: TargetServer, probe: Probe) -> None:
    rss = server.rss_mib()
    run = under_attack(probe, attackers.too_many_streams, server.port, ATTACK_SECONDS, 1000)
    allowed = streams_per_connection(MAX_CONCURRENT_RPCS, SPARE_CALLS)
    assert allowed == MIN_STREAMS_PER_CONNECTION
    assert run.report["advertised"] == allowed
    # Streams beyond the limit are reset REFUSED_STREAM (or the connection is closed outright).
    assert run.report["refused"] >= 1000 - allowed or run.report["goaway"] is not None
    assert_unharmed(server, probe, run, rss)


def test_continuation_flood_without_end_headers(server: TargetServer, probe: Probe) -> None:
    rss = server.rss_mib()
    run = under_attack(probe, attackers.continuation_flood, server.port, ATTACK_SECONDS, 128 << 20)
    # Core reads on (HPACK state must stay in step) but keeps none of a header block past the hard
    # limit: many times that limit went in, and the server's memory (checked below) did not follow.
    assert run.report["bytes"] > 100 * METADATA_HARD_LIMIT_BYTES
    assert_unharmed(server, probe, run, rss)


def test_ping_flood_gets_goaway(server: TargetServer, probe: Probe) -> None:
    rss = server.rss_mib()
    run = under_attack(probe, attackers.ping_flood, server.port, ATTACK_SECONDS, 200_000)
    closes = run.report["closes"]
    assert any(close["goaway"] == ENHANCE_YOUR_CALM for close in closes), closes
    assert_unharmed(server, probe, run, rss)


def test_settings_flood(server: TargetServer, probe: Probe) -> None:
    rss = server.rss_mib()
    run = under_attack(probe, attackers.settings_flood, server.port, ATTACK_SECONDS, 2_000_000)
    assert run.report["frames"] >= 10_000
    assert_unharmed(server, probe, run, rss)


def test_many_idle_connections(server: TargetServer, probe: Probe) -> None:
    rss = server.rss_mib()
    run = under_attack(probe, attackers.idle_connections, server.port, ATTACK_SECONDS, 300, 200)
    assert run.report["held"] == 500
    assert_unharmed(server, probe, run, rss)
