"""The stall watchdog at its bound: a stream is cancelled at the fourth idle check in a row, not the third.

The server tests show a stalled search cancelled and a reading one kept, with real time between; these
drive the watchdog's checks one at a time, so an off-by-one in the count, or a count that a sent message
fails to reset, shows.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from service.stalls import StallWatchdog


async def _forever() -> None:
    await asyncio.Event().wait()


def test_the_check_interval_is_a_quarter_of_the_bound() -> None:
    watchdog = StallWatchdog(stalled_seconds=10.0)
    assert watchdog.CHECKS_PER_BOUND == 4
    assert watchdog._interval == 2.5


@pytest.mark.parametrize(("idle_checks", "cancelled"), [(3, False), (4, True), (5, True)])
def test_a_silent_stream_is_cancelled_from_the_fourth_idle_check_on(
    idle_checks: int, cancelled: bool, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[bool, bool]:
        watchdog = StallWatchdog(stalled_seconds=8.0)
        task = asyncio.get_running_loop().create_task(_forever())
        await asyncio.sleep(0)
        progress = watchdog.watch("/catalog.ProductCatalog/SearchProducts")
        progress.task = task
        watchdog._check()  # the first check sees the count for the first time: not idle yet
        for _ in range(idle_checks):
            watchdog._check()
        await asyncio.sleep(0)
        result = task.cancelled() or task.cancelling() > 0, progress in watchdog._streams
        task.cancel()
        watchdog.release(progress)
        return result

    with caplog.at_level(logging.WARNING, logger="service.stalls"):
        was_cancelled, still_watched = asyncio.run(scenario())
    assert was_cancelled is cancelled
    assert still_watched is not cancelled
    warnings = [r.getMessage() for r in caplog.records]
    if cancelled:
        assert warnings == [
            "cancelled /catalog.ProductCatalog/SearchProducts: no message sent for 8 s "
            "(its client stopped reading)"
        ]
    else:
        assert warnings == []


def test_each_message_sent_restarts_the_count() -> None:
    async def scenario() -> bool:
        watchdog = StallWatchdog(stalled_seconds=8.0)
        task = asyncio.get_running_loop().create_task(_forever())
        progress = watchdog.watch("/catalog.ProductCatalog/SearchProducts")
        progress.task = task
        watchdog._check()
        for _ in range(3):
            for _ in range(3):
                watchdog._check()
            progress.sent += 1  # a message just before the fourth idle check
            watchdog._check()
        await asyncio.sleep(0)
        alive = not task.cancelled() and task.cancelling() == 0 and progress in watchdog._streams
        task.cancel()
        watchdog.release(progress)
        return alive

    assert asyncio.run(scenario())


def test_a_released_stream_is_no_longer_watched() -> None:
    async def scenario() -> int:
        watchdog = StallWatchdog(stalled_seconds=8.0)
        progress = watchdog.watch("/m")
        watchdog.release(progress)
        watchdog.release(progress)  # twice is harmless: a stream may end while being cancelled
        return len(watchdog._streams)

    assert asyncio.run(scenario()) == 0


# The watchdog as the call guard runs it: watch() from the stream's own task, the loop on a task of its own.
# The bound is short, and each wait is bounded generously: these assert what happens, not how fast.


async def _stalled_stream(watchdog: StallWatchdog, sends: int = 0) -> None:
    progress = watchdog.watch("/catalog.ProductCatalog/SearchProducts")
    try:
        for _ in range(sends):
            progress.sent += 1
            await asyncio.sleep(watchdog._interval / 2)
        await asyncio.Event().wait()
    finally:
        watchdog.release(progress)


def _watchdogs() -> list[asyncio.Task[object]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == "stall-watchdog"]


def test_a_watched_stream_that_sends_nothing_is_cancelled_by_the_running_watchdog() -> None:
    async def scenario() -> tuple[int, bool]:
        watchdog = StallWatchdog(stalled_seconds=0.2)
        streams = [asyncio.create_task(_stalled_stream(watchdog)) for _ in range(2)]
        await asyncio.sleep(0)
        running = len(_watchdogs())  # one watchdog for every stream
        done, _ = await asyncio.wait(streams, timeout=30)
        return running, all(task.cancelled() for task in done) and len(done) == 2

    running, cancelled = asyncio.run(scenario())
    assert running == 1
    assert cancelled


def test_a_stream_that_keeps_sending_outlives_a_stalled_one_checked_after_it() -> None:
    async def scenario() -> tuple[bool, bool]:
        watchdog = StallWatchdog(stalled_seconds=0.2)
        sending = asyncio.create_task(_stalled_stream(watchdog, sends=40))
        stalled = asyncio.create_task(_stalled_stream(watchdog))
        await asyncio.wait([stalled], timeout=30)
        alive = not sending.done()
        sending.cancel()
        return stalled.cancelled(), alive

    stalled_cancelled, sending_alive = asyncio.run(scenario())
    assert stalled_cancelled
    assert sending_alive


def test_the_watchdog_starts_again_for_streams_after_it_went_idle() -> None:
    async def scenario() -> bool:
        watchdog = StallWatchdog(stalled_seconds=0.2)
        first = asyncio.create_task(_stalled_stream(watchdog))
        await asyncio.wait([first], timeout=30)
        for _ in range(100):  # the loop ends once no stream is left
            if watchdog._task is None:
                break
            await asyncio.sleep(0.05)
        second = asyncio.create_task(_stalled_stream(watchdog))
        await asyncio.wait([second], timeout=30)
        return first.cancelled() and second.cancelled()

    assert asyncio.run(scenario())
