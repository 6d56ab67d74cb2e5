"""A raw HTTP/2 client on hyperframe and hpack: it sends whatever frames it is told, as no gRPC client would.

It keeps no stream state and enforces no limit of the server's; it only decodes the server's header blocks
in order (HPACK needs every one) and acknowledges the server's SETTINGS when asked to read.
"""

from __future__ import annotations

import gzip
import select
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_BYTES = 9
MAX_FRAME_BYTES = 16_384
# RFC 9113 error codes the server may send.
NO_ERROR = 0x0
CANCEL = 0x8
REFUSED_STREAM = 0x7
ENHANCE_YOUR_CALM = 0xB


def grpc_message(payload: bytes, *, compressed: bool = False) -> bytes:
    """One gRPC length-prefixed message: a compressed flag, a 4-byte big-endian length, the bytes."""
    return (b"\x01" if compressed else b"\x00") + len(payload).to_bytes(4, "big") + payload


def gzip_message(payload: bytes) -> bytes:
    """`payload` gzip-compressed as one gRPC message, for a call sent with `grpc-encoding: gzip`."""
    return grpc_message(gzip.compress(payload, compresslevel=9), compressed=True)


def request_headers(
    method: str, extra: Sequence[tuple[str, str]] = (), authority: str = "localhost"
) -> list[tuple[str, str]]:
    """A gRPC call's request headers for `method` ("/package.Service/Method")."""
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", method),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        *extra,
    ]


@dataclass
class StreamOutcome:
    """What the server sent on one stream."""

    headers: list[list[tuple[str, str]]] = field(default_factory=list)  # each header block, decoded
    data: bytearray = field(default_factory=bytearray)
    reset: int | None = None  # the RST_STREAM error code
    ended: bool = False  # END_STREAM seen (trailers) or reset

    @property
    def grpc_status(self) -> int | None:
        """The call's grpc-status, from its trailers (or a trailers-only answer)."""
        for block in reversed(self.headers):
            for name, value in block:
                if name == "grpc-status":
                    return int(value)
        return None


class RawConnection:
    """One TCP connection to the server, speaking HTTP/2 frame by frame."""

    def __init__(self, port: int, settings: dict[int, int] | None = None, preface: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._encoder = hpack.Encoder()
        self._decoder = hpack.Decoder()
        self._decoder.max_allowed_table_size = 1 << 16
        self._buffer = bytearray()
        self.streams: dict[int, StreamOutcome] = {}
        self.goaway: GoAwayFrame | None = None
        self.server_settings: dict[int, int] = {}
        self.closed = False  # the server closed the connection
        self.frames_received = 0
        self._next_stream_id = 1
        if preface:
            frame = SettingsFrame(0)
            frame.settings = dict(settings or {})
            self.send_bytes(PREFACE + frame.serialize())

    def new_stream_id(self) -> int:
        """The next client stream id (odd, increasing)."""
        stream_id = self._next_stream_id
        self._next_stream_id += 2
        return stream_id

    def header_block(self, headers: Iterable[tuple[str, str]]) -> bytes:
        """`headers` HPACK-encoded with this connection's encoder (blocks must be sent in encoding order)."""
        return bytes(self._encoder.encode(list(headers)))

    def headers_frame(
        self, stream_id: int, headers: Iterable[tuple[str, str]], *, end_stream: bool = False
    ) -> HeadersFrame:
        """A complete HEADERS frame (END_HEADERS set)."""
        flags = ["END_HEADERS", *(["END_STREAM"] if end_stream else [])]
        return HeadersFrame(stream_id, data=self.header_block(headers), flags=flags)

    def call_frames(self, method: str, message: bytes, extra: Sequence[tuple[str, str]] = ()) -> list[Frame]:
        """The frames of a whole unary or server-streaming call: its headers, then its message, ended."""
        stream_id = self.new_stream_id()
        # DATA frames of at most 16 KiB, the largest every peer accepts before it has read our SETTINGS.
        step = MAX_FRAME_BYTES
        pieces = [message[start : start + step] for start in range(0, len(message), step)]
        data = [DataFrame(stream_id, data=piece) for piece in pieces or [b""]]
        data[-1].flags.add("END_STREAM")
        return [self.headers_frame(stream_id, request_headers(method, extra)), *data]

    def send(self, *frames: Frame) -> None:
        """Serialise and send `frames` in one write."""
        self.send_bytes(b"".join(frame.serialize() for frame in frames))

    def send_bytes(self, data: bytes) -> None:
        """Send raw bytes; a connection the server has closed just records that."""
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def read(self, seconds: float) -> None:
        """Read and record whatever the server sends for up to `seconds`, or until it closes."""
        deadline = time.monotonic() + seconds
        while not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            readable, _, _ = select.select([self.sock], [], [], remaining)
            if not readable:
                return
            self._receive()

    def read_until(self, done: Callable[[], bool], seconds: float) -> bool:
        """Read until `done()` is true (checked after every read), the server closes, or time is up."""
        deadline = time.monotonic() + seconds
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                return done()
            readable, _, _ = select.select([self.sock], [], [], min(remaining, 0.05))
            if readable:
                self._receive()
        return True

    def _receive(self) -> None:
        try:
            chunk = self.sock.recv(1 << 16)
        except OSError:
            chunk = b""
        if not chunk:
            self.closed = True
            return
        self._buffer += chunk
        for frame in self._frames():
            self._record(frame)

    def _frames(self) -> Iterator[Frame]:
        while len(self._buffer) >= FRAME_HEADER_BYTES:
            frame, length = Frame.parse_frame_header(memoryview(bytes(self._buffer[:FRAME_HEADER_BYTES])))
            if len(self._buffer) < FRAME_HEADER_BYTES + length:
                return
            end = FRAME_HEADER_BYTES + length
            frame.parse_body(memoryview(bytes(self._buffer[FRAME_HEADER_BYTES:end])))
            del self._buffer[:end]
            self.frames_received += 1
            yield frame

    def _record(self, frame: Frame) -> None:
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            self.server_settings.update(frame.settings)
            self.send(SettingsFrame(0, flags=["ACK"]))
        elif isinstance(frame, GoAwayFrame):
            self.goaway = frame
        elif isinstance(frame, HeadersFrame | ContinuationFrame):
            # The server never splits its small header blocks, so each frame is one whole block.
            outcome = self.streams.setdefault(frame.stream_id, StreamOutcome())
            outcome.headers.append([(str(k), str(v)) for k, v in self._decoder.decode(bytes(frame.data))])
            outcome.ended |= "END_STREAM" in frame.flags
        elif isinstance(frame, DataFrame):
            outcome = self.streams.setdefault(frame.stream_id, StreamOutcome())
            outcome.data += frame.data
            outcome.ended |= "END_STREAM" in frame.flags
        elif isinstance(frame, RstStreamFrame):
            outcome = self.streams.setdefault(frame.stream_id, StreamOutcome())
            outcome.reset = frame.error_code
            outcome.ended = True

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()
