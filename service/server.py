"""Server bootstrap: gRPC server, health, reflection, call guard. Knows nothing about products.

The server is grpc.aio on an event loop of its own, on a background thread. A call then costs one
coroutine on that thread, where grpc.server would hand it to a worker thread and back (and once more
for every message of a stream): for calls as cheap as this catalog's, those hand-offs were most of the
cost. Callers stay synchronous (`python -m service`, the tests): `run_server` is a plain context manager
and `RunningServer`'s methods pass their work to the loop and wait for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import grpc
import uvloop
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from catalog import catalog_pb2, catalog_pb2_grpc
from service.config import Settings
from service.interceptors import CallGuard, access_log
from service.limits import server_options
from service.servicer import CatalogServicer
from service.store import CatalogStore

SERVICE_NAME = catalog_pb2.DESCRIPTOR.services_by_name["ProductCatalog"].full_name
# Health names a probe may ask for: the whole server ("") and the catalog service.
HEALTH_NAMES = ("", SERVICE_NAME)
# Streams a connection may open beyond the catalog's limit, so health checks and reflection get through when
# the catalog is full (service/limits.py).
SPARE_CALLS = 4

_T = TypeVar("_T")
_log = logging.getLogger(__name__)


class EventLoopThread:
    """An asyncio event loop running on a daemon thread, driven from synchronous code."""

    def __init__(self, name: str) -> None:
        # uvloop: the loop's own work per call (callbacks, futures, polling) is in C, not Python.
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        """Start `coroutine` on the loop; safe from any thread, signal handlers included."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run `coroutine` on the loop and wait for its result (or its exception)."""
        return self.submit(coroutine).result()

    def close(self) -> None:
        """Stop the loop and its thread, then finish what is left on the loop, as asyncio.run does.

        A server stopped while streams wait on flow control leaves their generators' aclose() tasks
        queued; closed unrun, each would log "Task was destroyed but it is pending!" at ERROR.
        """
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        left = asyncio.all_tasks(self.loop)
        if left:  # gather() of nothing would take this thread's loop, not self.loop
            for task in left:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


class RunningServer:
    """A started server: its bound port, and the switches that bring it up and down."""

    def __init__(
        self,
        *,
        loop: EventLoopThread,
        server: aio.Server,
        port: int,
        health_servicer: health.aio.HealthServicer,
        servicer: CatalogServicer,
        guard: CallGuard,
    ) -> None:
        self.port = port
        self._guard = guard
        self._loop = loop
        self._server = server
        self._health = health_servicer
        self._servicer = servicer
        # Shutdown state lives on the loop thread, which alone starts and finishes a shutdown.
        self._shutdown: asyncio.Task[None] | None = None
        self._refusing = asyncio.Event()  # set once new calls are refused
        self._stopped = threading.Event()  # set once the server has stopped

    def serve_catalog(self, store: CatalogStore) -> None:
        """Answer from `store` and report SERVING on every health name."""
        self._servicer.install(store)
        self._loop.run(self._report_serving())
        _log.info("serving %d products on port %d", len(store), self.port)

    async def _report_serving(self) -> None:
        for name in HEALTH_NAMES:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def begin_shutdown(self, grace_seconds: float) -> threading.Event:
        """NOT_SERVING at once, refuse new calls, let in-flight ones finish within the grace period.

        Returns once new calls are refused, with an event set once the server has stopped. Safe to call
        more than once: a later call joins the first shutdown. Not for signal handlers: see shutdown_soon.
        """
        return self._loop.run(self._begin_shutdown(grace_seconds))

    def shutdown_soon(self, reason: str, grace_seconds: float) -> None:
        """Begin a shutdown without waiting for anything: safe in a signal handler.

        A handler runs on the main thread between two of its bytecodes; one that waited, or even logged,
        could block on a lock that the interrupted code holds. This only hands the work to the loop.
        """
        self._loop.loop.call_soon_threadsafe(self._shutdown_for, reason, grace_seconds)

    def _shutdown_for(self, reason: str, grace_seconds: float) -> None:
        _log.info("received %s", reason)
        self._start_shutdown(grace_seconds)

    async def _begin_shutdown(self, grace_seconds: float) -> threading.Event:
        self._start_shutdown(grace_seconds)
        await self._refusing.wait()
        return self._stopped

    def _start_shutdown(self, grace_seconds: float) -> None:
        """Start the shutdown on the loop, once: a second signal or call joins the first."""
        if self._shutdown is None:
            self._shutdown = asyncio.ensure_future(self._shut_down(grace_seconds))
            self._shutdown.add_done_callback(lambda _: self._stopped.set())

    async def _shut_down(self, grace_seconds: float) -> None:
        # The guard refuses new catalog calls with UNAVAILABLE (retryable) while the in-flight ones finish;
        # only then does gRPC itself stop. Stopping gRPC at once would race calls already on their way:
        # those it had accepted but not yet handed over end CANCELLED, which clients do not retry.
        deadline = asyncio.get_running_loop().time() + grace_seconds
        await self._health.enter_graceful_shutdown()
        self._guard.refuse_new_calls()
        self._refusing.set()
        _log.info("shutting down: finishing in-flight calls for up to %g s", grace_seconds)
        with contextlib.suppress(TimeoutError):  # past the grace, the server's stop cancels what is left
            await asyncio.wait_for(self._guard.idle(), timeout=grace_seconds)
        await self._server.stop(max(0.0, deadline - asyncio.get_running_loop().time()))

    def wait_for_termination(self) -> None:
        """Block until a shutdown has begun and finished.

        Waits in short slices: the kernel may deliver SIGTERM to one of gRPC's threads, and Python runs
        the handler only when the main thread next runs bytecode, so an untimed wait could sleep through
        it (seen in tests under load: a signal handled only after the test's 20 s deadline).
        """
        while not self._stopped.wait(timeout=0.2):
            pass


@contextmanager
def run_server(
    settings: Settings, store: CatalogStore | None = None, host: str = "[::]"
) -> Iterator[RunningServer]:
    """Listen on settings.port (0 picks a free one) and yield the running server; stop on exit.

    Health stays NOT_SERVING and catalog calls answer UNAVAILABLE until a catalog is installed, with
    `store` here or later with `serve_catalog`, so a probe never sees SERVING before products are.
    """
    loop = EventLoopThread("grpc-server")
    try:
        running = loop.run(_start(settings, host, loop))
    except BaseException:
        loop.close()
        raise
    _log.info(
        "listening on port %d (reflection %s, at most %d concurrent calls)",
        running.port,
        "on" if settings.enable_reflection else "off",
        settings.max_concurrent_rpcs,
    )
    try:
        if store is not None:
            running.serve_catalog(store)
        yield running
    finally:
        running.begin_shutdown(0).wait()
        loop.close()
        # Access lines wait up to AccessLog.FLUSH_SECONDS for the loop's timer, which will not run now. With
        # the loop's thread gone, this one may write them, and with them any that calls cancelled by the
        # stop added while they unwound.
        access_log.flush()


async def _start(settings: Settings, host: str, loop: EventLoopThread) -> RunningServer:
    """Build, bind and start the server on the loop (grpc.aio objects belong to the loop that made them)."""
    guard = CallGuard(settings.max_concurrent_rpcs, settings.project_id, settings.stalled_stream_seconds)
    servicer = CatalogServicer()
    health_servicer = health.aio.HealthServicer()
    for name in HEALTH_NAMES:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    handlers = _Handlers()
    # _Handlers has the two methods these call on a server.
    catalog_pb2_grpc.add_ProductCatalogServicer_to_server(servicer, cast(aio.Server, handlers))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, cast(aio.Server, handlers))
    server = aio.server(
        handlers=[handlers.guarded(guard)],
        # No server-wide maximum_concurrent_rpcs: it counts calls until gRPC core ends them, and core keeps a
        # stream cancelled for stalling until its connection closes, so stalled clients would fill it and
        # refuse health checks. The guard limits catalog calls; the limits bound the rest per connection.
        options=[
            # gRPC shares ports by default: a second server on a busy port would start and split the traffic.
            ("grpc.so_reuseport", 0),
            # Hands socket writes to gRPC's own threads instead of the event loop's, which is the server's
            # bottleneck under load (measured: about 10% more calls per second, about 20 us more per call
            # on an idle connection).
            ("grpc.optimization_target", "throughput"),
            # What a hostile or broken client may cost: docs/hardening.md.
            *server_options(settings.max_concurrent_rpcs, SPARE_CALLS),
        ],
    )
    if settings.enable_reflection:
        # Imported only when asked for: it is off in production, and its import is 4% of start-up.
        from grpc_reflection.v1alpha import reflection  # noqa: PLC0415

        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    port = server.add_insecure_port(f"{host}:{settings.port}")
    if port == 0:
        raise OSError(f"cannot listen on {host}:{settings.port}")
    await server.start()
    return RunningServer(
        loop=loop, server=server, port=port, health_servicer=health_servicer, servicer=servicer, guard=guard
    )


class _Handlers:
    """Collects the method handlers the generated `add_*_to_server` functions register.

    So each handler can be wrapped by the call guard once, here, instead of on every call.
    """

    def __init__(self) -> None:
        self._by_method: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def add_generic_rpc_handlers(self, _handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        """Ignored: the same handlers come by service name in add_registered_method_handlers."""

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        """Keep the service's handlers under their full method names."""
        for name, handler in handlers.items():
            self._by_method[f"/{service}/{name}"] = handler

    def guarded(self, guard: CallGuard) -> grpc.GenericRpcHandler:
        """One handler for every collected method, each wrapped by `guard`."""
        return _GuardedHandlers({method: guard.wrap(method, h) for method, h in self._by_method.items()})


class _GuardedHandlers(grpc.GenericRpcHandler):
    def __init__(self, by_method: dict[str, grpc.RpcMethodHandler[Any, Any]]) -> None:
        self._by_method = by_method

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        return self._by_method.get(handler_call_details.method)
