"""gRPC core's protective limits for the catalog server: what a hostile or broken client may cost it.

Each limit is a named constant that says why it has its value; docs/hardening.md lists them with the attacks
they answer and the tests that prove them (tests/attack/). Channel-argument names are those of grpc's
include/grpc/impl/channel_arg_names.h; core's defaults are noted where they differ.
"""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024

# Streams one HTTP/2 connection may have open at once (core: unlimited). Core's rapid-reset defence refuses
# new streams while more than this many are still allocated, so it does nothing until this is set. At least
# the instance's whole call limit plus the spare calls for probes: Cloud Run's front end may carry every
# call to an instance over one connection. Never below 100, the floor RFC 9113 section 6.5.2 recommends.
MIN_STREAMS_PER_CONNECTION = 100

# The largest request message accepted (core: 4 MiB). Every request of this API is a handful of short
# strings and numbers (an id; a category, a page size and a page token of 24 characters; a search phrase):
# tens of bytes. 16 KiB is hundreds of times that, and 256 times less than core's default that each stream
# could otherwise make the server buffer. Larger messages end RESOURCE_EXHAUSTED.
MAX_REQUEST_BYTES = 16 * KIB

# Request metadata (headers) per call, soft and hard (core's defaults, pinned so an upgrade cannot move
# them). Between the two, core refuses a growing random share of calls; above the hard limit, every one.
# A Cloud Run request carries the client's headers, an ID token (about 1 KiB) and the front end's forwarding
# and trace headers: 2 to 3 KiB in all.
METADATA_SOFT_LIMIT_BYTES = 8 * KIB
METADATA_HARD_LIMIT_BYTES = 16 * KIB

# Keepalive enforcement: a client may ping at most this often while it sends no data (core: 5 minutes),
# and each ping sooner is a strike; past MAX_PING_STRIKES the connection is closed with GOAWAY
# ENHANCE_YOUR_CALM ("too_many_pings"). 10 s admits the shortest keepalive gRPC's Go and Java clients allow
# (they raise shorter ones to 10 s) while a call is in flight, and a ping flood costs its connection after
# three pings too soon. With no call in flight core allows one ping per 2 hours (the server does not set
# grpc.keepalive_permit_without_calls): on Cloud Run a client's pings end at Google's front end anyway.
MIN_PING_INTERVAL_WITHOUT_DATA_MS = 10_000
MAX_PING_STRIKES = 2

# A connection with no call for this long is closed with GOAWAY (core: never). Idle connections still cost
# memory and a file descriptor each; a client that comes back reconnects on its next call in a round trip.
# Five minutes is far longer than the pause between calls of any client that keeps a connection busy.
MAX_CONNECTION_IDLE_MS = 5 * 60_000

# Every connection is closed after this age (core: never, and core adds up to 10% of jitter), after a GOAWAY
# that lets its calls finish for up to the grace period. Long-lived clients then reconnect, and the load
# balancer (Cloud Run's front end, or any L4 balancer where the image runs elsewhere) spreads them over the
# instances a scale-out added, instead of leaving them on the old ones; during a roll-out, connections to an
# old revision end without cutting calls. The grace is far above any call's length (a search of 1000 results
# streams in well under a second) and above the latest a stalled stream is cancelled (STALLED_STREAM_SECONDS
# is at most 45 s, cancelled within 1.25 times that: service/config.py), so only stalled streams reach it. A
# GOAWAY ends no call in flight; new calls go to a new connection, and the client's retry policy covers the
# UNAVAILABLE of one that raced it, so callers do not see these closes.
MAX_CONNECTION_AGE_MS = 5 * 60_000
MAX_CONNECTION_AGE_GRACE_MS = 60_000

# A new connection must finish its handshake (and send its HTTP/2 SETTINGS) within this (core: 120 s).
# The server speaks cleartext HTTP/2 behind Cloud Run's TLS front end, so a real client needs one round trip;
# 10 s bounds what a slowloris-style client that opens connections and sends nothing can hold.
HANDSHAKE_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class ConnectionLimits:
    """The connection limits above, in ms, as one value: the tests pass shorter ones to watch each act.

    gRPC ignores a channel argument it does not know, so only watching a limit act shows it is set.
    """

    idle_ms: int = MAX_CONNECTION_IDLE_MS
    age_ms: int = MAX_CONNECTION_AGE_MS
    age_grace_ms: int = MAX_CONNECTION_AGE_GRACE_MS
    handshake_timeout_ms: int = HANDSHAKE_TIMEOUT_MS


def streams_per_connection(max_concurrent_calls: int, spare_calls: int) -> int:
    """Streams one connection may open: the whole call limit and the spare calls, at least 100."""
    return max(MIN_STREAMS_PER_CONNECTION, max_concurrent_calls + spare_calls)


def server_options(
    max_concurrent_calls: int, spare_calls: int, connections: ConnectionLimits | None = None
) -> list[tuple[str, int]]:
    """The limits above as `grpc.aio.server` options, for a server admitting `max_concurrent_calls`."""
    connections = connections or ConnectionLimits()
    return [
        ("grpc.max_concurrent_streams", streams_per_connection(max_concurrent_calls, spare_calls)),
        ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
        ("grpc.max_metadata_size", METADATA_SOFT_LIMIT_BYTES),
        ("grpc.absolute_max_metadata_size", METADATA_HARD_LIMIT_BYTES),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_PING_INTERVAL_WITHOUT_DATA_MS),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
        ("grpc.max_connection_idle_ms", connections.idle_ms),
        ("grpc.max_connection_age_ms", connections.age_ms),
        ("grpc.max_connection_age_grace_ms", connections.age_grace_ms),
        ("grpc.server_handshake_timeout_ms", connections.handshake_timeout_ms),
    ]
