"""The connection limits of service/limits.py act: each one shortened, watched on a raw HTTP/2 connection.

gRPC ignores a channel argument it does not know, so a misspelt option would pass every other test; here a
silent connection is closed at the handshake timeout, an idle one gets GOAWAY, and an old one gets GOAWAY
and is closed once its grace is over. Each test's timeout is generous: these say what happens, not how fast.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from hyperframe.frame import SettingsFrame

from bench.rawh2 import NO_ERROR, RawConnection, grpc_message
from catalog import catalog_pb2
from service.config import Settings
from service.limits import ConnectionLimits
from service.store import CatalogStore
from tests.servers import in_process
from tests.service.helpers import make_products

# Far longer than any limit shortened here, and far shorter than core's defaults (a limit left unset, or
# set under a name core does not know, is never reached within it).
PATIENCE_SECONDS = 30
SEARCH = "/catalog.ProductCatalog/SearchProducts"
# Matches every product, with more results than a flow-control window of 0 lets through.
BIG_SEARCH = grpc_message(catalog_pb2.SearchRequest(query="item", max_results=1000).SerializeToString())


@contextmanager
def server_with(limits: ConnectionLimits) -> Iterator[int]:
    """The port of the real server, on 1000 products, with these connection limits."""
    settings = Settings(port=0, connection_limits=limits)
    with in_process(settings, CatalogStore(make_products(1000))) as server:
        yield server.port


@contextmanager
def connected(
    port: int, settings: dict[int, int] | None = None, *, preface: bool = True
) -> Iterator[RawConnection]:
    """A raw HTTP/2 connection to 127.0.0.1:`port`, closed on exit."""
    connection = RawConnection(port, settings, preface=preface)
    try:
        yield connection
    finally:
        connection.close()


def closed_by_server(sock: socket.socket, seconds: float) -> bool:
    """Read and drop what the server sends, sending nothing, until it closes the connection or time is up."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(1 << 16):
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def test_a_connection_that_sends_nothing_is_closed_at_the_handshake_timeout() -> None:
    with (
        server_with(ConnectionLimits(handshake_timeout_ms=500)) as port,
        # Not a RawConnection: it would acknowledge the server's SETTINGS, which is not a silent client.
        socket.create_connection(("127.0.0.1", port)) as silent,
        connected(port) as speaking,
    ):
        assert closed_by_server(silent, PATIENCE_SECONDS)
        # The limit is the handshake's: a connection that sent its preface is still open.
        speaking.read(0.2)
        assert speaking.server_settings
        assert not speaking.closed
        assert speaking.goaway is None


def test_an_idle_connection_gets_goaway() -> None:
    with server_with(ConnectionLimits(idle_ms=500)) as port, connected(port) as idle:
        assert idle.read_until(lambda: idle.goaway is not None, PATIENCE_SECONDS)
        assert idle.goaway is not None
        # Core's text; its code is INTERNAL_ERROR, which ends nothing here: the connection had no call.
        assert idle.goaway.additional_data == b"connection idle"


def test_an_old_connection_gets_goaway_and_is_closed_after_the_grace() -> None:
    limits = ConnectionLimits(age_ms=500, age_grace_ms=3000)
    with (
        server_with(limits) as port,
        # A window of 0: the search's data waits on it, so the call is still in flight at the GOAWAY.
        connected(port, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 0}) as old,
    ):
        frames = old.call_frames(SEARCH, BIG_SEARCH)
        old.send(*frames)
        stream = frames[0].stream_id
        assert old.read_until(lambda: old.goaway is not None, PATIENCE_SECONDS)
        assert old.goaway is not None
        assert old.goaway.error_code == NO_ERROR
        assert b"age" in old.goaway.additional_data
        # The GOAWAY ends no call: the search is in flight, its connection open, until the grace is over.
        assert old.streams[stream].headers
        assert not old.streams[stream].ended
        assert not old.closed
        assert old.read_until(lambda: old.closed, PATIENCE_SECONDS)
        # Core ended the call, unfinished, as the grace ran out: UNAVAILABLE, which clients retry.
        assert old.streams[stream].grpc_status == grpc.StatusCode.UNAVAILABLE.value[0]
        assert ("grpc-message", "max connection age") in old.streams[stream].headers[-1]
