"""Our own work per call, timed in this process without gRPC: what this code adds to grpcio's cost.

`make bench` compares ours with a bare server of the same model, and that difference mixes our work with
what the machine does meanwhile. This times our part alone, on the event loop the server uses (uvloop)
and a store of the bench's catalog: the request decoded as gRPC would decode it, the guard around
the call (limit, stall watchdog, duration, the sampled access line put together; the server writes its
lines in batches, and these are written once, after the timing), the servicer and the store, up to the
response bytes gRPC would send; beside the same calls to the bare grpc.aio server's own handlers
(bench/bare.py), which answer one fixed product.

    python -m bench.own_work [--products N] [--calls N]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, cast

import grpc
import uvloop
from grpc import aio

from bench.bare import aio_get, aio_search
from bench.cases import SEARCH_COMMON, SEARCH_COMMON_RESULTS, WrongAnswerError, reference_search
from bench.catalog import generate_products
from catalog import GET_PRODUCT_METHOD, SEARCH_PRODUCTS_METHOD, catalog_pb2
from catalog.catalog_pb2 import Product
from service.call_guard import CallGuard, GuardedHandlers
from service.config import Settings
from service.logs import AccessLog
from service.servicer import SERVED, CatalogServicer
from service.store import CatalogStore

ROUNDS = 3
MIN_PRODUCTS = (
    3000  # a margin over the 2000 products whose generated catalog first gives the search 100 matches
)
DEFAULT_CALLS = 10_000  # of each kind in each round: about 4 s in all


@dataclass(frozen=True)
class OwnWork:
    """Microseconds per call of our work and of a bare handler's, for GetProduct and a 100-result search."""

    get_us: float
    bare_get_us: float
    search_us: float
    bare_search_us: float

    def lines(self) -> list[str]:
        """The report's lines."""
        return [
            "our own work per call, in this process without gRPC (the guard, the servicer, the store):",
            f"  GetProduct {self.get_us:.1f} us (a bare handler's {self.bare_get_us:.1f} us)",
            f"  search-100 {self.search_us:.1f} us, "
            f"{self.search_us / SEARCH_COMMON_RESULTS:.2f} us a message "
            f"(a bare handler's {self.bare_search_us:.1f} us)",
        ]


class _Context:
    """What the guard and the servicer ask of a call's context; an abort ends the call as gRPC's does."""

    def __init__(self) -> None:
        self.ended: tuple[grpc.StatusCode, str] | None = None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:50000"

    def time_remaining(self) -> float | None:
        return None

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def code(self) -> grpc.StatusCode | None:
        return None if self.ended is None else self.ended[0]

    def done(self) -> bool:
        return self.ended is not None

    async def abort(self, code: grpc.StatusCode, details: str = "", *_: Any) -> NoReturn:
        self.ended = (code, details)
        raise aio.AbortError()


def measure(products: Sequence[Product], calls: int) -> OwnWork:
    """Time `calls` GetProducts (of the middle product, as the get case) and as many 100-result searches."""
    store = CatalogStore.from_products(products)
    expected = _Expected(
        products[len(products) // 2], reference_search(products, SEARCH_COMMON, SEARCH_COMMON_RESULTS)
    )
    return uvloop.run(_measure(store, expected, calls))


@dataclass(frozen=True)
class _Expected:
    """The answers the seed's semantics give: what our handlers must answer before they are timed."""

    product: Product
    search: list[Product]


def _as_is(data: bytes) -> bytes:
    return data


async def _measure(store: CatalogStore, expected: _Expected, calls: int) -> OwnWork:
    with open(os.devnull, "w") as nowhere:
        with contextlib.redirect_stdout(nowhere):
            access_log = AccessLog(logging.getLogger("bench.own_work.access"))  # keeps this stdout
        try:
            return await _time_calls(_our_handlers(store, access_log), expected, calls)
        finally:
            access_log.close()


async def _time_calls(handlers: tuple[Any, Any], expected: _Expected, calls: int) -> OwnWork:
    get, search = handlers  # grpc.RpcMethodHandler: its behaviours are typed as optional
    get_request = catalog_pb2.GetProductRequest(id=expected.product.id).SerializeToString()
    search_request = catalog_pb2.SearchRequest(query=SEARCH_COMMON, max_results=SEARCH_COMMON_RESULTS)
    search_bytes = search_request.SerializeToString()
    context = _Context()
    # gRPC hands a method the request's bytes as they are when it has no deserializer, as GetProduct has not.
    get_parse = get.request_deserializer or _as_is

    async def ours_get() -> bytes:
        answer: bytes = get.response_serializer(await get.unary_unary(get_parse(get_request), context))
        return answer

    def ours_search_stream() -> AsyncIterator[Any]:
        return cast(
            AsyncIterator[Any], search.unary_stream(search.request_deserializer(search_bytes), context)
        )

    async def ours_search() -> None:
        serialize = search.response_serializer
        async for message in ours_search_stream():
            serialize(message)

    async def bare_get() -> None:
        await aio_get(get_request, context)

    async def bare_search() -> None:
        async for _ in aio_search(search_request, context):
            pass

    # What is timed answers as the seed's semantics say: the product asked for, the first 100 matches.
    try:
        product = Product.FromString(await ours_get())
        found = [Product.FromString(message) async for message in ours_search_stream()]
    except aio.AbortError:
        code, details = context.ended or (grpc.StatusCode.UNKNOWN, "")
        raise WrongAnswerError(f"a call the bench times ended {code.name}: {details}") from None
    if product != expected.product:
        raise WrongAnswerError(f"GetProduct did not answer product {expected.product.id}")
    if found != expected.search:
        raise WrongAnswerError(
            f"the search for {SEARCH_COMMON!r} answered other products than the seed's server"
        )
    return OwnWork(
        get_us=await _median_per_call(ours_get, calls),
        bare_get_us=await _median_per_call(bare_get, calls),
        search_us=await _median_per_call(ours_search, calls),
        bare_search_us=await _median_per_call(bare_search, calls),
    )


def _our_handlers(store: CatalogStore, access_log: AccessLog) -> tuple[Any, Any]:
    """GetProduct's and SearchProducts' handlers as the server builds them, with the server's defaults."""
    access_log.logger.setLevel(logging.INFO)  # as in production: the sampled OK lines are written
    settings = Settings()
    guard = CallGuard(
        settings.max_concurrent_rpcs,
        "",
        access_log,
        settings.stalled_stream_seconds,
        ok_log_sample_rate=settings.ok_log_sample_rate,
    )
    handlers = GuardedHandlers(guard)
    handlers.add(SERVED.register, CatalogServicer(store))
    get, search = (
        handlers.service(cast(Any, _Details(method)))
        for method in (GET_PRODUCT_METHOD, SEARCH_PRODUCTS_METHOD)
    )
    return get, search


@dataclass(frozen=True)
class _Details:
    """The one field of grpc.HandlerCallDetails that GuardedHandlers reads."""

    method: str


async def _median_per_call(call: Callable[[], Awaitable[object]], calls: int) -> float:
    """Microseconds per call: the median of ROUNDS rounds of `calls` calls, as the machine may pause one."""
    per_call = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(calls):
            await call()
        per_call.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(per_call)


def main(argv: list[str] | None = None) -> int:
    """Print our own work per call on a synthetic catalog."""
    parser = argparse.ArgumentParser(prog="python -m bench.own_work", description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=100_000, help="catalog size (default 100000)")
    parser.add_argument(
        "--calls",
        type=int,
        default=DEFAULT_CALLS,
        help=f"calls of each kind in each of {ROUNDS} rounds (default {DEFAULT_CALLS})",
    )
    args = parser.parse_args(argv)
    if args.products < MIN_PRODUCTS or args.calls < 1:
        parser.error(
            f"--products must be at least {MIN_PRODUCTS} (the search needs 100 matches), --calls at least 1"
        )
    for line in measure(generate_products(args.products), args.calls).lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
