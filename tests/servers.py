"""How tests run a catalog server: in-process (`in_process`), or as `python -m service` until it exits.

A server process the tests talk to is bench.servers.ServerProcess, the bench's own: without a `log_path`
it keeps the log in memory, and it is killed at clean-up.

The server is grpc.aio and runs on an event loop; the tests are synchronous, so an in-process server runs
on a loop of its own on a daemon thread (`LoopThread`), and the tests call it through a small handle.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import os
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import uvloop

from service.config import Settings
from service.server import CatalogServer, run_server
from service.servicer import Catalog
from service.telemetry import Telemetry

ROOT = Path(__file__).resolve().parents[1]
_T = TypeVar("_T")


class LoopThread:
    """An event loop (uvloop, as the service runs) on a daemon thread, driven from synchronous code."""

    def __init__(self, name: str) -> None:
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        """Start `coroutine` on the loop; safe from any thread."""
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


@contextmanager
def in_thread(
    context: AbstractAsyncContextManager[_T], name: str = "test-server"
) -> Iterator[tuple[_T, LoopThread]]:
    """Enter an async context manager (a server) on a LoopThread of its own; exit it, then the loop.

    Yields what the context manager yields, and the loop, to run more of its coroutines on.
    """
    loop = LoopThread(name)
    try:
        entered = loop.run(context.__aenter__())
        try:
            yield entered, loop
        except BaseException as error:
            if not loop.run(context.__aexit__(type(error), error, error.__traceback__)):
                raise
        else:
            loop.run(context.__aexit__(None, None, None))
    finally:
        loop.close()


class InProcessServer:
    """The synchronous handle of a `service.server.run_server` on a LoopThread."""

    def __init__(self, server: CatalogServer, loop: LoopThread) -> None:
        self.port = server.port
        self.server = server
        self._loop = loop

    @property
    def target(self) -> str:
        """The `localhost:PORT` a client dials."""
        return f"localhost:{self.port}"

    def serve_catalog(self, store: Catalog) -> None:
        """Start answering from `store` (for a server started without one)."""
        self._loop.run(self.server.serve_catalog(store))

    def shut_down(self, grace_seconds: float) -> None:
        """Drain and stop the server as SIGTERM would, and wait until it has stopped."""

        async def drain() -> None:
            await self.server.shut_down(grace_seconds)

        self._loop.run(drain())


@contextmanager
def in_process(
    settings: Settings | None = None, store: Catalog | None = None, telemetry: Telemetry | None = None
) -> Iterator[InProcessServer]:
    """The real server (`run_server`) on a free localhost port, in this process; `store` served at once.

    The one way tests start the service's server in-process.
    """
    # Every OK call's line too: tests read calls from their lines (a sampled log is tested on its own).
    settings = dataclasses.replace(settings or Settings(port=0), ok_log_sample_rate=1.0)
    context = run_server(settings, store, host="localhost", telemetry=telemetry)
    with in_thread(context, "catalog-server") as (server, loop):
        yield InProcessServer(server, loop)


def run_to_exit(env: Mapping[str, str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run `python -m service` with `env` until it exits by itself (start-up failures)."""
    return subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=ROOT,
        env={**os.environ, "PORT": "0", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
