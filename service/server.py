"""Server bootstrap: gRPC server, health, reflection, call guard, signals. Knows nothing about products.

What it serves comes from one declaration, `service.servicer.SERVED` (service/served.py).

The server is grpc.aio on the main thread's event loop (uvloop), as in grpc's
`async_greeter_server_with_graceful_shutdown.py`: a call costs one coroutine on that loop, where
grpc.server would hand it to a worker thread and back (and once more for every message of a stream).
`serve` is what `python -m service` runs; `run_server` is the server itself, for `serve` and the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from catalog import HEALTH_NAMES, HEALTH_SERVICE_NAME, SERVICE_NAME
from service.call_guard import CallGuard, GuardedHandlers
from service.config import Settings
from service.limits import server_options
from service.logs import AccessLog
from service.processes import claim_port
from service.servicer import SERVED
from service.telemetry import Telemetry
from service.telemetry import start as start_telemetry
from service.thread_priority import lower_other_threads

# Streams a connection may open beyond the catalog's limit, so health checks and reflection get through when
# the catalog is full (service/limits.py).
SPARE_CALLS = 4
SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Pauses between reads of a catalog file that cannot be read yet (CATALOG_READ_TIMEOUT_SECONDS bounds them
# all): short at first, for a mount a moment from ready, then one read and one log line a second.
FIRST_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 1.0

_T = TypeVar("_T")
# The data the servicer is born with (the catalog's store), opaque here.
Data = Any
_log = logging.getLogger(__name__)


async def serve(settings: Settings) -> None:
    """Listen, load the catalog, serve it until SIGTERM or SIGINT, then drain and stop.

    Raises SERVED.invalid for invalid data or SERVED.unreadable for data still unreadable after
    CATALOG_READ_TIMEOUT_SECONDS (logged here at CRITICAL, before the shutdown's lines; nothing was
    served), OSError or RuntimeError when the server cannot start.
    """
    async with run_server(settings) as server:
        _lower_grpc_threads()
        loop = asyncio.get_running_loop()
        for signum in SIGNALS:
            loop.add_signal_handler(signum, server.stop_on_signal, signum, settings.shutdown_grace_seconds)
        try:
            # Listening already, with health NOT_SERVING, while the catalog loads (see CatalogServer). On a
            # thread, so the loop answers probes and signals meanwhile, raced against the shutdown; the
            # store is then only read.
            try:
                data = await _load_unless_shut_down(server, settings)
            except SERVED.unreadable as error:
                _log.critical("cannot read the %s, not serving: %s", SERVED.data_name, error)
                raise
            except SERVED.invalid as error:
                _log.critical("invalid %s, not serving: %s", SERVED.data_name, error)
                raise
            if data is not _NO_DATA:
                await server.serve_catalog(data)
            await server.wait_for_termination()
        finally:
            for signum in SIGNALS:
                loop.remove_signal_handler(signum)


def _lower_grpc_threads() -> None:
    """Put gRPC's threads, started with the server, behind the loop's (service/thread_priority.py)."""
    try:
        lowered = lower_other_threads()
    except OSError as error:  # a sandbox that refuses setpriority: the server works, with more switches
        _log.warning("cannot lower gRPC's threads' priority (%s); serving at one priority", error)
    else:
        _log.debug("lowered the priority of %d threads beside the event loop's", lowered)


# No data: the shutdown came before it. Not None, which may be an API's data.
_NO_DATA = object()


async def _load_unless_shut_down(server: CatalogServer, settings: Settings) -> Data:
    """The data, or _NO_DATA if a shutdown begins first, while a read hangs or between retries.

    A read that never returns (CATALOG_PATH a FIFO no one writes, a hung Cloud Storage mount) is left on
    its daemon thread, so SIGTERM still ends the process at once, as Cloud Run expects.
    """
    load = asyncio.ensure_future(_load_data(settings))
    shutdown = asyncio.ensure_future(server.wait_for_shutdown())
    try:
        await asyncio.wait((load, shutdown), return_when=asyncio.FIRST_COMPLETED)
    finally:
        shutdown.cancel()
        load.cancel()  # a no-op once it is done
    if server.shutting_down:
        if load.done() and not load.cancelled():
            load.exception()  # retrieved, so asyncio does not log it: the shutdown came first
        return _NO_DATA
    return load.result()


async def _load_data(settings: Settings) -> Data:
    """SERVED's data, read on a thread; data that cannot be read yet is read again until the timeout.

    Only SERVED.unreadable is retried (for the catalog: missing, failing to read, or not the bytes
    CATALOG_SHA256 names): what a Cloud Storage mount does for a moment at start-up. A file read whole
    (its digest as expected) that is invalid stays invalid, so it fails at once.
    """
    loop = asyncio.get_running_loop()
    timeout = settings.catalog_read_timeout_seconds
    deadline = loop.time() + timeout
    delay = FIRST_RETRY_SECONDS
    reads = 0
    while True:
        reads += 1
        try:
            data = await _on_daemon_thread(lambda: SERVED.load(settings))
        except SERVED.unreadable as error:
            left = deadline - loop.time()
            if left <= 0:
                if timeout == 0:
                    raise
                raise SERVED.unreadable(
                    f"{error} (still failing after {reads} reads in {timeout:g} s)"
                ) from None
            _log.warning(
                "%s not readable yet, NOT_SERVING; retrying for %.1f s more: %s",
                SERVED.data_name,
                left,
                error,
            )
        else:
            _log.info("loaded %s", SERVED.loaded(settings, data))
            return data
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, MAX_RETRY_SECONDS)


async def _on_daemon_thread(function: Callable[[], _T]) -> _T:
    """`function()` on a daemon thread of its own, awaited on the loop.

    Not asyncio.to_thread: its executor's threads are joined when the loop's run ends (asyncio.run and
    uvloop.run both do), so a read that never returns would keep the process alive after the shutdown.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():  # not cancelled: someone still waits
            outcome()

    def run() -> None:
        try:
            result = function()
        except Exception as error:
            outcome = functools.partial(future.set_exception, error)
        else:
            outcome = functools.partial(future.set_result, result)
        with contextlib.suppress(RuntimeError):  # the loop has closed: no one waits any more
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=run, name=f"{SERVED.data_name}-load", daemon=True).start()
    return await future


class CatalogServer:
    """A started server: its bound port, the catalog it serves once loaded, and its one shutdown.

    It listens before the catalog is loaded, health NOT_SERVING and catalog calls UNAVAILABLE meanwhile,
    rather than opening its port only once it has products. For Cloud Run's probes: the startup probe
    (on catalog.ProductCatalog) gets an answer, NOT_SERVING, instead of a refused connection, so a
    catalog read slowly from a Cloud Storage mount (or retried while the mount warms up) reads in the logs
    and in probe results as "loading", not as "not started"; a readiness probe can be answered the same
    way whenever the server should get no traffic, without closing the port; and SIGTERM is handled
    while the catalog loads. The catalog servicer is still born with its store: it is added once loaded,
    replacing one that answers UNAVAILABLE.
    """

    def __init__(
        self,
        *,
        server: aio.Server,
        port: int,
        health_servicer: health.aio.HealthServicer,
        handlers: GuardedHandlers,
        guard: CallGuard,
        access_log: AccessLog,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.port = port
        self.access_log = access_log
        self.telemetry = telemetry
        self._server = server
        self._health = health_servicer
        self._handlers = handlers
        self._guard = guard
        self._shutdown: asyncio.Task[None] | None = None
        self._shutdown_begun = asyncio.Event()

    async def serve_catalog(self, data: Data) -> None:
        """Answer with `SERVED.servicer(data)`; SERVING on every health name (unless shutting down)."""
        if self._shutdown is not None:
            return
        self._handlers.add(SERVED.register, SERVED.servicer(data))
        for name in HEALTH_NAMES:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        _log.info("serving %s on port %d", SERVED.served(data), self.port)

    @property
    def shutting_down(self) -> bool:
        """Whether the shutdown has begun."""
        return self._shutdown is not None

    def stop_on_signal(self, signum: int, grace_seconds: float) -> None:
        """The signal handler (run by the loop, as a callback): log the signal and begin the shutdown."""
        _log.info("received %s", signal.Signals(signum).name)
        self.shut_down(grace_seconds)

    def shut_down(self, grace_seconds: float) -> asyncio.Task[None]:
        """Begin the shutdown and return it, to await; a later call (a second signal) joins the first."""
        if self._shutdown is None:
            self._shutdown = asyncio.ensure_future(self._drain(grace_seconds))
            self._shutdown_begun.set()
        return self._shutdown

    async def wait_for_shutdown(self) -> None:
        """Return once the shutdown has begun (it may still be draining)."""
        await self._shutdown_begun.wait()

    async def _drain(self, grace_seconds: float) -> None:
        # NOT_SERVING at once; the guard refuses new catalog calls with UNAVAILABLE (retryable) while the
        # in-flight ones finish; only then does gRPC itself stop. Stopping gRPC at once, as bare
        # `stop(grace)` does, would race calls already on their way: those it had accepted but not yet
        # handed over end CANCELLED, which clients do not retry.
        deadline = asyncio.get_running_loop().time() + grace_seconds
        await self._health.enter_graceful_shutdown()
        self._guard.refuse_new_calls()
        _log.info("shutting down: finishing in-flight calls for up to %g s", grace_seconds)
        with contextlib.suppress(TimeoutError):  # past the grace, the server's stop cancels what is left
            await asyncio.wait_for(self._guard.idle(), timeout=grace_seconds)
        await self._server.stop(max(0.0, deadline - asyncio.get_running_loop().time()))

    async def wait_for_termination(self) -> None:
        """Return once the server has stopped (after a shutdown)."""
        await self._server.wait_for_termination()
        if self._shutdown is not None:
            await self._shutdown


@asynccontextmanager
async def run_server(
    settings: Settings, store: Data | None = None, host: str = "[::]", telemetry: Telemetry | None = None
) -> AsyncIterator[CatalogServer]:
    """Listen on settings.port (0 picks a free one) and yield the started server; stop it on exit.

    Health stays NOT_SERVING and catalog calls answer UNAVAILABLE until a catalog is served, `store`
    here or later through `serve_catalog`, so a probe never sees SERVING before products are.
    """
    server = await _start(settings, host, telemetry)
    _log.info(
        "listening on port %d (reflection %s, at most %d concurrent calls)",
        server.port,
        "on" if settings.enable_reflection else "off",
        settings.max_concurrent_rpcs,
    )
    try:
        if store is not None:
            await server.serve_catalog(store)
        yield server
    finally:
        await server.shut_down(0)  # joins a shutdown already under way
        # Calls cancelled by the stop add their lines as they unwind, maybe after the loop's last turn.
        server.access_log.close()
        if server.telemetry is not None:
            server.telemetry.shutdown()  # the last points and spans, exported before the process ends


def grpc_options(settings: Settings) -> list[tuple[str, int | str]]:
    """The server's gRPC options (bench/bare.py gives a bare server the same, to count what they cost)."""
    return [
        # gRPC shares ports by default: a second server on a busy port would start and split the traffic.
        # Only the processes of one server share it (service/processes.py).
        ("grpc.so_reuseport", int(settings.reuse_port)),
        # Hands socket writes to gRPC's own threads instead of the event loop's, which is the server's
        # bottleneck under load (measured: about 10% more calls per second, about 20 us more per call
        # on an idle connection).
        ("grpc.optimization_target", "throughput"),
        # What a hostile or broken client may cost: docs/hardening.md.
        *server_options(settings.max_concurrent_rpcs, SPARE_CALLS, settings.connection_limits),
    ]


async def _start(settings: Settings, host: str, telemetry: Telemetry | None) -> CatalogServer:
    """Build, bind and start the server on the running loop (grpc.aio objects belong to it).

    `telemetry` is the settings' unless given (tests read metrics from an in-memory reader).
    """
    access_log = AccessLog(logging.getLogger("service.access"))
    telemetry = telemetry or start_telemetry(settings)
    guard = CallGuard(
        settings.max_concurrent_rpcs,
        settings.project_id,
        access_log,
        settings.stalled_stream_seconds,
        telemetry=telemetry,
        ok_log_sample_rate=settings.ok_log_sample_rate,
    )
    health_servicer = health.aio.HealthServicer()
    for name in HEALTH_NAMES:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    handlers = GuardedHandlers(guard)
    handlers.add(SERVED.register, SERVED.loading_servicer())
    handlers.add(health_pb2_grpc.add_HealthServicer_to_server, health_servicer)
    server = aio.server(
        handlers=[handlers],
        # No server-wide maximum_concurrent_rpcs: it counts calls until gRPC core ends them, and core keeps a
        # stream cancelled for stalling until its connection closes, so stalled clients would fill it and
        # refuse health checks. The guard limits catalog calls; the limits bound the rest per connection.
        options=grpc_options(settings),
    )
    if settings.enable_reflection:
        # Imported only when asked for: it is off in production, and its import is 4% of start-up.
        from grpc_reflection.v1alpha import reflection  # noqa: PLC0415

        reflection.enable_server_reflection(
            (SERVICE_NAME, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    if settings.port and not settings.reuse_port:
        claim_port(host, settings.port)  # PortInUseError, rather than gRPC's raw error
    port = server.add_insecure_port(f"{host}:{settings.port}")
    if port == 0:
        raise OSError(f"cannot listen on {host}:{settings.port}")
    await server.start()
    return CatalogServer(
        server=server,
        port=port,
        health_servicer=health_servicer,
        handlers=handlers,
        guard=guard,
        access_log=access_log,
        telemetry=telemetry,
    )
