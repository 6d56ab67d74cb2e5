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
