"""Server bootstrap: gRPC server, health, reflection, interceptor. Knows nothing about products."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from catalog import catalog_pb2, catalog_pb2_grpc
from service.config import Settings
from service.interceptors import CatalogInterceptor
from service.servicer import CatalogServicer
from service.store import CatalogStore

SERVICE_NAME = catalog_pb2.DESCRIPTOR.services_by_name["ProductCatalog"].full_name
# Health names a probe may ask for: the whole server ("") and the catalog service.
HEALTH_NAMES = ("", SERVICE_NAME)
# Threads beyond the catalog's limit, so health checks and reflection are served when it is full.
SPARE_THREADS = 4

_log = logging.getLogger(__name__)


@dataclass
class RunningServer:
    """A started server: its bound port, and the switches that bring it up and down."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    servicer: CatalogServicer

    def __post_init__(self) -> None:
        # Re-entrant: a signal handler may call begin_shutdown on the thread already inside it.
        self._stopping = threading.RLock()
        self._stopped: threading.Event | None = None

    def serve_catalog(self, store: CatalogStore) -> None:
        """Answer from `store` and report SERVING on every health name."""
        self.servicer.install(store)
        for name in HEALTH_NAMES:
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        _log.info("serving %d products on port %d", len(store), self.port)

    def begin_shutdown(self, grace_seconds: float) -> threading.Event:
        """NOT_SERVING at once, refuse new calls, let in-flight ones finish within the grace period.

        Safe to call more than once (SIGTERM then SIGINT): later calls return the first call's event.
        """
        with self._stopping:
            if self._stopped is None:
                self.health.enter_graceful_shutdown()
                self._stopped = self.server.stop(grace_seconds)
                _log.info("shutting down: finishing in-flight calls for up to %g s", grace_seconds)
            return self._stopped


@contextmanager
def run_server(
    settings: Settings, store: CatalogStore | None = None, host: str = "[::]"
) -> Iterator[RunningServer]:
    """Listen on settings.port (0 picks a free one) and yield the running server; stop on exit.

    Health stays NOT_SERVING and catalog calls answer UNAVAILABLE until a catalog is installed, with
    `store` here or later with `serve_catalog`, so a probe never sees SERVING before products are.
    """
    interceptor = CatalogInterceptor(settings.max_concurrent_rpcs, settings.project_id)
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=settings.max_concurrent_rpcs + SPARE_THREADS, thread_name_prefix="rpc"
        ),
        interceptors=[interceptor],
        # A hard cap on everything (health and reflection included), above the catalog's own limit.
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs + SPARE_THREADS,
        # gRPC shares ports by default: a second server on a busy port would start and split the traffic.
        options=[("grpc.so_reuseport", 0)],
    )
    servicer = CatalogServicer()
    catalog_pb2_grpc.add_ProductCatalogServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    for name in HEALTH_NAMES:
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.enable_reflection:
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    port = server.add_insecure_port(f"{host}:{settings.port}")
    if port == 0:
        raise OSError(f"cannot listen on {host}:{settings.port}")
    server.start()
    running = RunningServer(server, port, health_servicer, servicer)
    _log.info(
        "listening on port %d (reflection %s, at most %d concurrent calls)",
        port,
        "on" if settings.enable_reflection else "off",
        settings.max_concurrent_rpcs,
    )
    try:
        if store is not None:
            running.serve_catalog(store)
        yield running
    finally:
        running.begin_shutdown(0).wait()
