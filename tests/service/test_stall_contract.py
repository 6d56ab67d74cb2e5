"""The stall watchdog's contract, check by check: which streams it cancels, when, and which it leaves alone.

A stream is watched from its own task (`watch`), bumps `sent` for each message gRPC takes, and is released
when it ends. Every `stalled_seconds / 4` the watchdog checks each stream; one that sent nothing at four
checks in a row after the check that last saw it move is cancelled, so a stream is never cut after less than
`stalled_seconds` of silence, and always within 1.25 times that. These tests drive the checks one at a time
(no clock), so an off-by-one, a stream skipped or a stream cancelled twice shows; test_stall_edges.py covers
the watchdog on its own task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from service.stalls import StallWatchdog, StreamProgress

SEARCH = "/catalog.ProductCatalog/SearchProducts"
BOUND = StallWatchdog.CHECKS_PER_BOUND  # idle checks in a row that cost a stream its call


class Streams:
    """Streams watched by one watchdog, each in a task of its own that waits until it is cancelled."""

    def __init__(self, watchdog: StallWatchdog) -> None:
        self.watchdog = watchdog
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.progress: dict[str, StreamProgress] = {}

    async def open(self, name: str) -> StreamProgress:
        """Start stream `name`: its task calls `watch` itself, as a handler does, then waits forever."""
        watched: asyncio.Future[StreamProgress] = asyncio.get_running_loop().create_future()

        async def stream() -> None:
            watched.set_result(self.watchdog.watch(name))
            await asyncio.Event().wait()

        self.tasks[name] = asyncio.create_task(stream(), name=name)
        self.progress[name] = await watched
        return self.progress[name]

    async def cancelled(self) -> set[str]:
        """The streams whose task the watchdog has cancelled (once each has had a turn to see it)."""
        await asyncio.sleep(0)
        return {name for name, task in self.tasks.items() if task.cancelled() or task.cancelling()}

    def close(self) -> None:
        for name, task in self.tasks.items():
            task.cancel()
            self.watchdog.release(self.progress[name])


def run(scenario: Callable[[Streams], Awaitable[None]], stalled_seconds: float = 8.0) -> None:
    """Run `scenario` on a fresh loop with a watchdog whose own task never gets to check (a long bound)."""

    async def main() -> None:
        streams = Streams(StallWatchdog(stalled_seconds))
        try:
            await scenario(streams)
        finally:
            streams.close()

    asyncio.run(main())


@pytest.mark.parametrize("sent_before_first_check", [0, 1, 2])
def test_a_stream_is_cut_at_the_bound_whatever_it_sent_before_its_first_check(
    sent_before_first_check: int,
) -> None:
    # The first check is the one that last sees the stream move: silence is counted from there, so a stream
    # that sent one message and stopped gets the whole bound too, not one check less.
    async def scenario(streams: Streams) -> None:
        progress = await streams.open(SEARCH)
        progress.sent += sent_before_first_check
        streams.watchdog._check()
        for _ in range(BOUND - 1):
            streams.watchdog._check()
        assert await streams.cancelled() == set()  # silent for just under the bound
        streams.watchdog._check()
        assert await streams.cancelled() == {SEARCH}  # silent for the whole bound

    run(scenario)


def test_a_stream_that_moves_does_not_shield_the_silent_ones_checked_after_it() -> None:
    # Half the streams send before every check, half never do, alternating in the order the checks visit
    # them: a check that stopped at the first stream that moved would leave every silent one running.
    async def scenario(streams: Streams) -> None:
        for index in range(6):
            await streams.open(f"/catalog.ProductCatalog/Stream{index}")
        order = list(streams.watchdog._streams)  # the order a check visits them in
        moving, silent = order[::2], order[1::2]
        streams.watchdog._check()
        for _ in range(BOUND):
            for progress in moving:
                progress.sent += 1
            streams.watchdog._check()
        assert await streams.cancelled() == {progress.method for progress in silent}

    run(scenario)


def test_a_cancelled_stream_is_cancelled_once_and_no_longer_watched(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(streams: Streams) -> None:
        progress = await streams.open(SEARCH)
        other = await streams.open("/catalog.ProductCatalog/Other")
        for _ in range(BOUND + 1):
            other.sent += 1
            streams.watchdog._check()
        assert await streams.cancelled() == {SEARCH}
        # Later checks (its task may take a while to end) neither cancel nor log it again.
        for _ in range(2 * BOUND):
            other.sent += 1
            streams.watchdog._check()
        assert progress not in streams.watchdog._streams
        assert other in streams.watchdog._streams

    with caplog.at_level(logging.WARNING, logger="service.stalls"):
        run(scenario)
    assert [record.getMessage() for record in caplog.records] == [
        f"cancelled {SEARCH}: no message sent for 8 s (its client stopped reading)"
    ]


def test_a_released_stream_is_never_cancelled_and_the_others_still_are() -> None:
    async def scenario(streams: Streams) -> None:
        ended = await streams.open("/catalog.ProductCatalog/Ended")
        await streams.open(SEARCH)
        streams.watchdog.release(ended)
        for _ in range(BOUND + 1):
            streams.watchdog._check()
        assert await streams.cancelled() == {SEARCH}

    run(scenario)


def test_watch_records_the_calling_task_and_the_method() -> None:
    async def scenario(streams: Streams) -> None:
        progress = await streams.open(SEARCH)
        assert progress.task is streams.tasks[SEARCH]
        assert progress.method == SEARCH
        assert progress in streams.watchdog._streams

    run(scenario)


def test_a_stream_watched_outside_a_task_is_left_alone_and_does_not_stop_the_checks() -> None:
    # watch() from a plain callback has no task to cancel: the stream stays watched until released, and the
    # checks go on cancelling the streams that have one.
    async def scenario(streams: Streams) -> None:
        loop = asyncio.get_running_loop()
        outside: asyncio.Future[StreamProgress] = loop.create_future()
        loop.call_soon(lambda: outside.set_result(streams.watchdog.watch("/catalog.ProductCatalog/NoTask")))
        taskless = await outside
        assert taskless.task is None
        await streams.open(SEARCH)
        for _ in range(2 * BOUND):
            streams.watchdog._check()
        assert await streams.cancelled() == {SEARCH}
        assert taskless in streams.watchdog._streams
        streams.watchdog.release(taskless)

    run(scenario)


@pytest.mark.parametrize("stalled_seconds", [1.0, 30.0, 45.0])
def test_the_checks_split_the_bound_into_equal_intervals(stalled_seconds: float) -> None:
    # service/config.py's bounds (1 to 45 s) and default: cancelled between the bound and 1.25 times it.
    watchdog = StallWatchdog(stalled_seconds)
    assert watchdog.stalled_seconds == stalled_seconds
    assert watchdog._interval * BOUND == pytest.approx(stalled_seconds)
    assert watchdog._interval * (BOUND + 1) == pytest.approx(1.25 * stalled_seconds)
