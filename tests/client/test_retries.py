"""The channel's retries: only UNAVAILABLE, throttled, paced by server pushback, GOAWAYs kept from callers."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import pytest

from catalog import catalog_pb2, catalog_pb2_grpc
from client.channel import MAX_ATTEMPTS, RETRY_MAX_TOKENS, Transport, open_channel
from service.call_guard import Context
from service.catalog_file import load_catalog
from service.servicer import CatalogServicer
from tests.client.servers import many_products, serve

REQUEST = catalog_pb2.GetProductRequest(id="1")


class Failing(CatalogServicer):
    """GetProduct fails with `code` the first `failures` times (always, by default), with optional pushback.

    Records the time of every attempt it receives.
    """

    def __init__(
        self, code: grpc.StatusCode, *, failures: int = 10**9, pushback_ms: str | None = None
    ) -> None:
        super().__init__(load_catalog())
        self.code = code
        self.failures = failures
        self.pushback_ms = pushback_ms
        self.attempts: list[float] = []

    async def GetProduct(self, request: bytes, context: Context) -> bytes:
        self.attempts.append(time.monotonic())
        if len(self.attempts) <= self.failures:
            trailers = () if self.pushback_ms is None else (("grpc-retry-pushback-ms", self.pushback_ms),)
            await context.abort(self.code, "failing on purpose", trailing_metadata=trailers)
        return await super().GetProduct(request, context)


def call_until_done(target: str, calls: int) -> list[grpc.StatusCode]:
    """Make `calls` GetProduct calls on one client channel; the status code of each."""
    codes = []
    with open_channel(target, Transport(plaintext=True), None) as channel:
        stub = catalog_pb2_grpc.ProductCatalogStub(channel)
        for _ in range(calls):
            try:
                stub.GetProduct(REQUEST, timeout=10)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                codes.append(error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN)
    return codes


def test_throttling_keeps_retries_from_multiplying_a_failing_services_traffic() -> None:
    servicer = Failing(grpc.StatusCode.UNAVAILABLE)
    calls = 20
    with serve(servicer) as server:
        codes = call_until_done(server.target, calls)
    assert codes == [grpc.StatusCode.UNAVAILABLE] * calls
    attempts = len(servicer.attempts)
    # Without throttling every call would make MAX_ATTEMPTS attempts (80). With it, retries stop once half
    # of the tokens are spent: the first call is retried, the later ones are not.
    assert attempts > calls
    assert attempts - calls <= RETRY_MAX_TOKENS // 2
    assert attempts < calls * MAX_ATTEMPTS // 2


@pytest.mark.parametrize("code", [grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT])
def test_other_codes_are_not_retried(code: grpc.StatusCode) -> None:
    servicer = Failing(code)
    with serve(servicer) as server:
        assert call_until_done(server.target, 1) == [code]
    assert len(servicer.attempts) == 1


def test_unavailable_is_retried_until_it_succeeds() -> None:
    servicer = Failing(grpc.StatusCode.UNAVAILABLE, failures=MAX_ATTEMPTS - 1)
    with serve(servicer) as server:
        assert call_until_done(server.target, 1) == [grpc.StatusCode.OK]
    assert len(servicer.attempts) == MAX_ATTEMPTS


def test_negative_pushback_stops_the_retries() -> None:
    servicer = Failing(grpc.StatusCode.UNAVAILABLE, pushback_ms="-1")
    with serve(servicer) as server:
        assert call_until_done(server.target, 1) == [grpc.StatusCode.UNAVAILABLE]
    assert len(servicer.attempts) == 1


def test_pushback_sets_when_the_retry_comes() -> None:
    # The policy's own first backoff is at most 0.2 s; a server that asks for 1 s gets at least 1 s.
    paced = Failing(grpc.StatusCode.UNAVAILABLE, failures=1, pushback_ms="1000")
    unpaced = Failing(grpc.StatusCode.UNAVAILABLE, failures=1)
    for servicer in (paced, unpaced):
        with serve(servicer) as server:
            assert call_until_done(server.target, 1) == [grpc.StatusCode.OK]
    paced_gap = paced.attempts[1] - paced.attempts[0]
    unpaced_gap = unpaced.attempts[1] - unpaced.attempts[0]
    assert paced_gap >= 1.0
    # Without pushback the policy's own backoff comes first: the two gaps compared, not a clock bound.
    assert unpaced_gap < paced_gap


class PeerRecording(CatalogServicer):
    """Remembers the client address of every call: a new one is a new connection."""

    def __init__(self) -> None:
        super().__init__(many_products(50))
        self.peers: list[str] = []
        self._lock = threading.Lock()

    def _record(self, context: Any) -> None:
        with self._lock:
            self.peers.append(context.peer())

    async def GetProduct(self, request: bytes, context: Context) -> bytes:
        self._record(context)
        return await super().GetProduct(request, context)

    async def ListProducts(self, request: catalog_pb2.ListProductsRequest, context: Context) -> bytes:
        self._record(context)
        return await super().ListProducts(request, context)


def test_goaways_from_a_maximum_connection_age_are_invisible() -> None:
    # The server closes every connection after about 0.2 s (GOAWAY, then a grace for calls in flight): the
    # client keeps calling across many such closes and no call fails.
    servicer = PeerRecording()
    options = [("grpc.max_connection_age_ms", 200), ("grpc.max_connection_age_grace_ms", 5000)]
    with (
        serve(servicer, options=options) as server,
        open_channel(server.target, Transport(plaintext=True), None) as channel,
    ):
        stub = catalog_pb2_grpc.ProductCatalogStub(channel)
        for number in range(400):
            if number % 2:
                stub.GetProduct(catalog_pb2.GetProductRequest(id=f"p{number % 50:04d}"), timeout=10)
            else:
                assert (
                    len(stub.ListProducts(catalog_pb2.ListProductsRequest(page_size=5), timeout=10).products)
                    == 5
                )
            if len(set(servicer.peers)) >= 4:
                break
            time.sleep(0.01)
    assert len(set(servicer.peers)) >= 4, "the server never closed a connection: nothing was tested"
