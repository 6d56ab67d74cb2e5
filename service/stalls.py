"""Cancel response streams that make no progress: a client that stops reading must not keep a call slot.

A server stream waits on HTTP/2 flow control for as long as its client neither reads nor leaves, holding
one of the catalog's concurrency slots meanwhile: one connection with that many unread searches would
refuse every other caller. The watchdog counts the messages each stream hands to gRPC and cancels a stream
that has sent none for `stalled_seconds`, which closes its generator and gives its slot back.

gRPC keeps the cancelled call itself until its connection closes (an HTTP/2 stream cannot end while data
it queued waits on the peer's window, and grpc.aio cannot reset a stream from the server), which the
connection's stream limit and maximum age bound (service/limits.py).
"""

from __future__ import annotations

import asyncio
import logging

_log = logging.getLogger(__name__)


class StreamProgress:
    """One stream's sent-message count, bumped by the stream, read by the watchdog."""

    __slots__ = ("idle_checks", "last_seen", "method", "sent", "task")

    def __init__(self, task: asyncio.Task[object] | None, method: str) -> None:
        self.task = task
        self.method = method
        self.sent = 0
        self.last_seen = -1  # `sent` at the previous check
        self.idle_checks = 0  # checks in a row that saw no new message


class StallWatchdog:
    """Watches in-flight streams from a task of its own, which runs only while there are any."""

    # Checks per bound: a stalled stream is cancelled between stalled_seconds and 1.25 times that.
    CHECKS_PER_BOUND = 4

    def __init__(self, stalled_seconds: float) -> None:
        self.stalled_seconds = stalled_seconds
        self._interval = stalled_seconds / self.CHECKS_PER_BOUND
        self._streams: set[StreamProgress] = set()
        self._task: asyncio.Task[None] | None = None

    def watch(self, method: str) -> StreamProgress:
        """Start watching the stream running in the current task; call `release` when it ends."""
        progress = StreamProgress(asyncio.current_task(), method)
        self._streams.add(progress)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="stall-watchdog")
        return progress

    def release(self, progress: StreamProgress) -> None:
        """Stop watching a stream that has ended."""
        self._streams.discard(progress)

    async def _run(self) -> None:
        try:
            while self._streams:
                await asyncio.sleep(self._interval)
                self._check()
        finally:
            self._task = None

    def _check(self) -> None:
        for progress in list(self._streams):
            if progress.sent != progress.last_seen:
                progress.last_seen = progress.sent
                progress.idle_checks = 0
                continue
            progress.idle_checks += 1
            if progress.idle_checks >= self.CHECKS_PER_BOUND and progress.task is not None:
                self._streams.discard(progress)
                _log.warning(
                    "cancelled %s: no message sent for %g s (its client stopped reading)",
                    progress.method,
                    self.stalled_seconds,
                )
                progress.task.cancel()
