"""Our server's per-call work on grpc's thread-pool server: a model to measure, not the server.

    CATALOG_PATH=catalog.json PORT=8080 python -m bench.thread_pool shared     # 10 threads, as the seed
    CATALOG_PATH=catalog.json PORT=8080 python -m bench.thread_pool per-slot   # a thread per call slot

The bench runs it beside the bare servers (bench/bare.py) to answer the question the bare servers leave
open: with the work our server does per call (the request decoded, the call counted against the limit,
the store's answer, the duration histogram, a sampled access line), which model costs less CPU on one
core? GetProduct and SearchProducts only, answered from the same store as `python -m service`; no drain,
stall watchdog, health states beyond SERVING, or telemetry export (docs/performance.md).

The two pools are the two ways that model could treat a client that stops reading a stream. On this model
a stream's thread waits for its client before it sends the next message, so a stalled stream holds a
thread until the stall watchdog ends it. With the seed's 10 threads (`shared`), ten such streams hold every
thread, and every call queues behind them, health checks included. With a thread for every call slot
(`per-slot`: MAX_CONCURRENT_RPCS and the spare calls), stalled streams can only fill the limit, whose new
calls are then refused, as ours on grpc.aio refuses them; but under load that many threads take turns on
the one CPU.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from catalog import GET_PRODUCT_METHOD, SEARCH_PRODUCTS_METHOD, SERVICE_NAME, catalog_pb2
from service.catalog_file import load_catalog
from service.config import Settings
from service.limits import server_options
from service.logs import json_line
from service.server import SPARE_CALLS
from service.servicer import method_handlers
from service.store import CatalogStore
from service.telemetry import DurationHistogram

# The seed's thread count, as bench/bare.py's thread-pool server has.
SHARED_THREADS = 10
POOLS = ("shared", "per-slot")


class _Model:
    """The catalog's two hot methods with our server's per-call work around each, on pool threads."""

    def __init__(self, store: CatalogStore, settings: Settings) -> None:
        self._store = store
        self._limit = settings.max_concurrent_rpcs
        self._sample_rate = settings.ok_log_sample_rate
        self._in_flight = 0
        self._lock = threading.Lock()
        self._durations = DurationHistogram("thread-pool-model")
        self._lines: list[str] = []
        self._random = random.random  # sampling, as the call guard samples (not for secrets)

    def GetProduct(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """The request found from its bytes, as the server finds it (CatalogServicer.GetProduct)."""
        started, peer = self._begin(context)
        code = grpc.StatusCode.OK
        try:
            product = self._store.get_by_id_field(request)
            if product is None:
                product_id = catalog_pb2.GetProductRequest.FromString(request).id
                product = self._store.get(product_id)
            if product is None:
                code = grpc.StatusCode.NOT_FOUND
                context.abort(code, f"product {product_id!r} not found")
            return product
        finally:
            self._end(GET_PRODUCT_METHOD, code, started, peer)

    def ListProducts(self, _request: object, context: grpc.ServicerContext) -> NoReturn:
        """Not part of the model: answered as a server without the method answers."""
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "ListProducts is not part of the thread-pool model")

    def SearchProducts(
        self, request: catalog_pb2.SearchRequest, context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        started, peer = self._begin(context)
        try:
            yield from self._store.search(request.query, request.max_results or 10)
        finally:
            self._end(SEARCH_PRODUCTS_METHOD, grpc.StatusCode.OK, started, peer)

    def _begin(self, context: grpc.ServicerContext) -> tuple[float, str]:
        started = time.perf_counter()
        peer = context.peer()
        context.time_remaining()  # as the call guard reads it, for its deadline check
        with self._lock:
            if self._in_flight >= self._limit:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "at the limit of concurrent calls")
            self._in_flight += 1
        return started, peer

    def _end(self, method: str, code: grpc.StatusCode, started: float, peer: str) -> None:
        seconds = time.perf_counter() - started
        with self._lock:
            self._in_flight -= 1
        self._durations.record(method, code.name, seconds)
        if code is grpc.StatusCode.OK and self._random() >= self._sample_rate:
            return
        fields = {"method": method, "code": code.name, "duration_ms": seconds * 1000, "peer": peer}
        self._lines.append(json_line("INFO", f"{method} {code.name}", time.time(), "access", fields) + "\n")
        if len(self._lines) >= 64:  # written in batches, as the access log is
            lines, self._lines = self._lines, []
            sys.stdout.write("".join(lines))


def threads(pool: str, settings: Settings) -> int:
    """The pool's thread count: the seed's, or one for every call the server admits and the spare ones."""
    return SHARED_THREADS if pool == "shared" else settings.max_concurrent_rpcs + SPARE_CALLS


def main(argv: list[str]) -> int:
    """Serve CATALOG_PATH on $PORT until SIGTERM, on the pool argv[0] names."""
    if len(argv) != 1 or argv[0] not in POOLS:
        print(f"usage: python -m bench.thread_pool {{{','.join(POOLS)}}}", file=sys.stderr)
        return 2
    settings = Settings.from_env(os.environ)
    model = _Model(load_catalog(os.environ["CATALOG_PATH"], search_index="now", saved=False), settings)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads(argv[0], settings)),
        handlers=[grpc.method_handlers_generic_handler(SERVICE_NAME, method_handlers(model))],
        options=[
            *server_options(settings.max_concurrent_rpcs, SPARE_CALLS, settings.connection_limits),
            ("grpc.so_reuseport", 0),
        ],
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    server.add_insecure_port(f"[::]:{os.environ.get('PORT', '8080')}")
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
