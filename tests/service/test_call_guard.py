"""CallGuard.idle, which the shutdown awaits: it returns as the last catalog call in flight ends."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import grpc

from service.call_guard import CallGuard, Context, UnaryBehavior
from service.logs import AccessLog

METHOD = "/catalog.ProductCatalog/GetProduct"


class _Context:
    """The little of a servicer context the guard reads for an admitted call that succeeds."""

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def time_remaining(self) -> float | None:
        return None


async def _turns(count: int) -> None:
    """Let the loop run `count` times round: enough to wake anything waiting on an event, not on a timer."""
    for _ in range(count):
        await asyncio.sleep(0)


async def _idle_as_calls_end() -> None:
    guard = CallGuard(4, None, AccessLog(logging.getLogger("tests.call_guard")))
    await asyncio.wait_for(guard.idle(), timeout=5)  # nothing in flight: at once
    release = [asyncio.Event(), asyncio.Event()]

    async def behavior(request: Any, _context: Context) -> Any:
        await release[request].wait()
        return request

    handler = guard.wrap(METHOD, grpc.unary_unary_rpc_method_handler(behavior))
    unary = cast(UnaryBehavior, handler.unary_unary)
    context = cast(Context, _Context())
    calls = [asyncio.ensure_future(unary(index, context)) for index in range(2)]
    await _turns(3)
    waiters = [asyncio.create_task(guard.idle()) for _ in range(2)]  # a second signal's drain joins
    release[0].set()
    assert await calls[0] == 0
    await _turns(3)
    assert not any(waiter.done() for waiter in waiters)  # one call is still in flight
    release[1].set()
    assert await calls[1] == 1
    await _turns(3)
    assert all(waiter.done() for waiter in waiters)


def test_idle_returns_as_the_last_call_in_flight_ends() -> None:
    asyncio.run(_idle_as_calls_end())
