"""service/limits.py's limits at their edges, as the real server enforces them over loopback.

gRPC ignores a channel argument it does not know, and a limit off by one byte or one strike passes any test
that stays far from it: each limit here is tried at, just below and just above its value. The connection
limits (idle, age, grace, handshake) are watched acting in test_connection_limits.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest
from hyperframe.frame import PingFrame, SettingsFrame

from bench.rawh2 import ENHANCE_YOUR_CALM, RawConnection, grpc_message, request_headers
from catalog import GET_PRODUCT_METHOD, HEALTH_CHECK_METHOD, catalog_pb2
from service.config import MAX_CONCURRENCY, Settings
from service.limits import (
    MAX_PING_STRIKES,
    MAX_REQUEST_BYTES,
    METADATA_HARD_LIMIT_BYTES,
    METADATA_SOFT_LIMIT_BYTES,
    MIN_PING_INTERVAL_WITHOUT_DATA_MS,
    MIN_STREAMS_PER_CONNECTION,
    streams_per_connection,
)
from service.server import SPARE_CALLS
from service.store import CatalogStore
from tests.servers import in_process
from tests.service.helpers import make_products

RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
# Every method a request can reach, the catalog's (from its descriptor) and the health check, and whether
# it streams its answer.
METHODS: dict[str, bool] = {
    f"/{service.full_name}/{method.name}": method.server_streaming
    for service in catalog_pb2.DESCRIPTOR.services_by_name.values()
    for method in service.methods
} | {HEALTH_CHECK_METHOD: False}


@contextmanager
def server(settings: Settings | None = None) -> Iterator[int]:
    """The port of the real server on a small catalog."""
    with in_process(settings or Settings(port=0), CatalogStore(make_products(10))) as running:
        yield running.port


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with server() as bound:
        yield bound


def settled(port: int) -> RawConnection:
    """A raw connection that has the server's SETTINGS (core holds a peer to HTTP/2's defaults until then)."""
    connection = RawConnection(port)
    assert connection.read_until(lambda: bool(connection.server_settings), 10)
    return connection


# The request message's size: a message of exactly the limit is served, one byte more is refused.


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])


def request_of(size: int) -> bytes:
    """A request message of exactly `size` bytes that every method parses: one field no request declares
    (number 15, length-delimited), which protobuf skips, so each method answers as to an empty request."""
    for payload in range(size - 2, size - 5, -1):
        message = b"\x7a" + _varint(payload) + b"x" * payload
        if len(message) == size:
            return message
    raise AssertionError(f"no request of {size} bytes")


def status_of(channel: grpc.Channel, method: str, request: bytes) -> grpc.StatusCode:
    """The status `method` answers `request` (bytes sent as they are) with."""
    stream: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(method)
    unary: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
    try:
        if METHODS[method]:
            list(stream(request, timeout=10))
        else:
            unary(request, timeout=10)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("size", "refused"),
    [(MAX_REQUEST_BYTES - 1, False), (MAX_REQUEST_BYTES, False), (MAX_REQUEST_BYTES + 1, True)],
)
def test_a_request_message_is_refused_from_one_byte_over_the_limit(
    port: int, method: str, size: int, refused: bool
) -> None:
    assert MAX_REQUEST_BYTES == 16 * 1024
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        code = status_of(channel, method, request_of(size))
    assert (code == grpc.StatusCode.RESOURCE_EXHAUSTED) is refused, code


# Request metadata, measured as HTTP/2 measures a header list (RFC 9113 section 6.5.2): each field's name and
# value plus 32, pseudo-headers included. Up to the soft limit every call is served; from the hard limit every
# call is refused; between them core refuses a share that grows from none to all (so one byte past either
# limit cannot be told from it by a test, but the middle can).


def padding_to(size: int) -> list[tuple[str, str]]:
    """The one extra header that brings a GetProduct call's header list to exactly `size` bytes."""
    base = request_headers(GET_PRODUCT_METHOD)
    padding = size - sum(len(name) + len(value) + 32 for name, value in base) - 32 - len("x-pad")
    extra = [("x-pad", "a" * padding)]
    assert sum(len(name) + len(value) + 32 for name, value in [*base, *extra]) == size
    return extra


def refusals(port: int, size: int, calls: int) -> int:
    """How many of `calls` calls with a header list of `size` bytes the server refused RESOURCE_EXHAUSTED.

    The calls go out together, as concurrent streams on one connection (in the order HPACK encoded them).
    """
    connection = settled(port)
    request = grpc_message(request_of(8))
    try:
        frames = [connection.call_frames(GET_PRODUCT_METHOD, request, padding_to(size)) for _ in range(calls)]
        connection.send(*(frame for call in frames for frame in call))
        streams = [call[0].stream_id for call in frames]
        answered = connection.read_until(
            lambda: all(s in connection.streams and connection.streams[s].ended for s in streams), 30
        )
        assert answered, f"calls with {size} bytes of headers left unanswered"
        return sum(connection.streams[s].grpc_status == RESOURCE_EXHAUSTED for s in streams)
    finally:
        connection.close()


# How many calls each size gets: refusals take core a while each, and "all" cannot be met by chance.
_CALLS = {"none": 40, "some": 30, "all": 10}


@pytest.mark.parametrize(
    ("size", "refused"),
    [
        (METADATA_SOFT_LIMIT_BYTES - 1, "none"),
        (METADATA_SOFT_LIMIT_BYTES, "none"),
        ((METADATA_SOFT_LIMIT_BYTES + METADATA_HARD_LIMIT_BYTES) // 2, "some"),
        (METADATA_HARD_LIMIT_BYTES - 1, "some or all"),
        (METADATA_HARD_LIMIT_BYTES, "all"),
        (METADATA_HARD_LIMIT_BYTES + 1, "all"),
    ],
)
def test_request_metadata_is_served_to_the_soft_limit_and_refused_from_the_hard_one(
    port: int, size: int, refused: str
) -> None:
    assert (METADATA_SOFT_LIMIT_BYTES, METADATA_HARD_LIMIT_BYTES) == (8 * 1024, 16 * 1024)
    # In the middle each call is refused at even odds: 30 alike happens once in 2**29 runs. One byte under
    # the hard limit a call is refused but for a chance in 8192: at least one of 10 is.
    calls = _CALLS.get(refused, 10)
    count = refusals(port, size, calls)
    expected = {
        "none": count == 0,
        "some": 0 < count < calls,
        "some or all": count > 0,
        "all": count == calls,
    }
    assert expected[refused], f"{count} of {calls} refused"


def test_the_server_announces_its_hard_metadata_limit(port: int) -> None:
    # SETTINGS_MAX_HEADER_LIST_SIZE tells a well-behaved client not to send what would be refused anyway.
    connection = settled(port)
    connection.close()
    assert connection.server_settings[SettingsFrame.MAX_HEADER_LIST_SIZE] == METADATA_HARD_LIMIT_BYTES


# Streams per connection: the call limit plus the spare calls, never under 100, as the server announces it.


@pytest.mark.parametrize(
    "max_concurrent_rpcs",
    [
        MIN_STREAMS_PER_CONNECTION - SPARE_CALLS - 1,
        MIN_STREAMS_PER_CONNECTION - SPARE_CALLS,
        MIN_STREAMS_PER_CONNECTION - SPARE_CALLS + 1,
        MAX_CONCURRENCY,
    ],
)
def test_the_server_announces_the_call_limit_and_spares_as_its_streams_per_connection(
    max_concurrent_rpcs: int,
) -> None:
    expected = max(MIN_STREAMS_PER_CONNECTION, max_concurrent_rpcs + SPARE_CALLS)
    assert streams_per_connection(max_concurrent_rpcs, SPARE_CALLS) == expected
    with server(Settings(port=0, max_concurrent_rpcs=max_concurrent_rpcs)) as bound:
        connection = settled(bound)
        connection.close()
    assert connection.server_settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == expected


# Pings: a ping sooner than the allowed interval after the last is a strike, and the strike after
# MAX_PING_STRIKES costs the connection (GOAWAY ENHANCE_YOUR_CALM "too_many_pings").


def ping(connection: RawConnection) -> None:
    connection.send(PingFrame(0, opaque_data=os.urandom(8)))
    connection.read(0.1)


def closed_for_pings(connection: RawConnection, wait: float = 0.3) -> bool:
    """Whether the server has closed the connection for its pings, reading for `wait` seconds first."""
    connection.read(wait)
    goaway = connection.goaway
    return goaway is not None and (goaway.error_code, goaway.additional_data) == (
        ENHANCE_YOUR_CALM,
        b"too_many_pings",
    )


@pytest.mark.parametrize("strikes", [MAX_PING_STRIKES - 1, MAX_PING_STRIKES, MAX_PING_STRIKES + 1])
def test_a_connection_is_closed_at_the_strike_after_the_last_allowed(port: int, strikes: int) -> None:
    # With no call in flight: the first ping is on time (none came before), each one after it a strike.
    assert MAX_PING_STRIKES == 2
    connection = settled(port)
    try:
        for _ in range(1 + strikes):
            ping(connection)
        assert closed_for_pings(connection) is (strikes > MAX_PING_STRIKES)
    finally:
        connection.close()


def calling(port: int) -> RawConnection:
    """A connection with a call in flight: a GetProduct whose request never comes."""
    connection = settled(port)
    connection.send(connection.headers_frame(connection.new_stream_id(), request_headers(GET_PRODUCT_METHOD)))
    connection.read(0.2)
    return connection


@pytest.mark.slow
@pytest.mark.parametrize(("seconds", "strike"), [(0.8, True), (1.2, False)])
def test_with_a_call_in_flight_a_ping_is_a_strike_only_sooner_than_the_interval(
    port: int, seconds: float, strike: bool
) -> None:
    # 0.8 and 1.2 times the interval: the margins keep a busy machine's delays from deciding. How many quick
    # pings cost a connection with a call in flight is core's business; a first connection counts them, the
    # second stops one short, waits, and pings: only a strike closes it.
    interval = MIN_PING_INTERVAL_WITHOUT_DATA_MS / 1000
    assert interval == 10
    # Each check reads for a second: on a loaded machine the GOAWAY can come later than a quick read,
    # and a count one too high would close the second connection before its timed ping.
    wait = 1.0
    counting = calling(port)
    pings = 0
    try:
        while not closed_for_pings(counting, wait):
            assert pings < 20, "quick pings never closed the connection"
            ping(counting)
            pings += 1
    finally:
        counting.close()
    connection = calling(port)
    try:
        for _ in range(pings - 1):
            ping(connection)
        assert not closed_for_pings(connection, wait)
        time.sleep(seconds * interval - wait)  # the timed ping comes seconds * interval after the last
        ping(connection)
        assert closed_for_pings(connection) is strike
        if not strike:  # not a strike, and not a pardon either: the next quick one is the last
            ping(connection)
            assert closed_for_pings(connection)
    finally:
        connection.close()
