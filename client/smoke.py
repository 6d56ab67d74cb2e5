"""The smoke check: whether a running server answers this API correctly, whatever catalog it holds.

`python -m client [options] TARGET smoke` runs it; a release tool calls `run_smoke(channel, timeout)` on a
channel of its own (`client.channel.open_channel`, with an ID token for a private service) and reads the
results. Every check runs, whatever failed before it, so one run names every failed check.
"""

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import grpc

from catalog import HEALTH_NAMES, catalog_pb2, catalog_pb2_grpc
from client.channel import health_check, serving_status, status_line
from client.plural import counted, plural

# The checks, in the order they run and are reported.
HEALTH = "health"
LIST_PAGES = "list-pages"
GET_PRODUCT = "get-product"
SEARCH = "search"
BAD_PAGE_TOKEN = "bad-page-token"  # noqa: S105 (a check's name, not a secret)
NEGATIVE_PAGE_SIZE = "negative-page-size"
DEADLINES = "deadlines"
CHECKS = (HEALTH, LIST_PAGES, GET_PRODUCT, SEARCH, BAD_PAGE_TOKEN, NEGATIVE_PAGE_SIZE, DEADLINES)

# The API's largest page (ListProductsRequest): the fewest calls to walk a large catalog.
DEFAULT_PAGE_SIZE = 1000
# No server can have issued this: it is not even base64.
INVALID_PAGE_TOKEN = "smoke-check: not a page token!"  # noqa: S105 (not a secret either)
_SEARCH_MAX_RESULTS = 1000

_T = TypeVar("_T")


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: its name (one of CHECKS), whether it held, and what was seen."""

    name: str
    passed: bool
    detail: str

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}: {self.detail}"


class _CheckFailedError(Exception):
    """A check did not hold; the message says what was seen."""


class _Calls:
    """The calls of one smoke run, each with the deadline; remembers which ones ran out of time."""

    def __init__(self, channel: grpc.Channel, timeout: float) -> None:
        self.timeout = timeout
        self.catalog = catalog_pb2_grpc.ProductCatalogStub(channel)
        self.health = health_check(channel)
        self.made = 0
        self.expired: list[str] = []

    def call(self, method: str, invoke: Callable[..., _T], *args: object) -> _T:
        """`invoke(*args, timeout=...)`; a failed call fails the check with its status line."""
        self.made += 1
        try:
            return invoke(*args, timeout=self.timeout)
        except grpc.RpcError as error:
            raise self.failure(method, error) from error

    def stream(self, method: str, responses: Iterable[_T]) -> Iterator[_T]:
        """Iterate a response stream, failing the check as `call` does (the deadline covers the stream)."""
        self.made += 1
        try:
            yield from responses
        except grpc.RpcError as error:
            raise self.failure(method, error) from error

    def failure(self, method: str, error: grpc.RpcError) -> _CheckFailedError:
        if isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            self.expired.append(method)
        return _CheckFailedError(f"{method} failed: {status_line(error)}")


def run_smoke(
    channel: grpc.Channel, timeout: float, *, page_size: int = DEFAULT_PAGE_SIZE
) -> list[CheckResult]:
    """Run every check over `channel`, each call with a deadline of `timeout` seconds; one result per check.

    The catalog may hold anything but must not be empty: GetProduct and search are checked against a product
    the listing returned. `page_size` is the page the listing walks with (tests use small ones).
    """
    calls = _Calls(channel, timeout)
    results = [_run(HEALTH, lambda: _health(calls))]
    products: list[catalog_pb2.Product] = []
    results.append(_run(LIST_PAGES, lambda: _list_pages(calls, page_size, products)))
    if products:
        product = products[0]
        results.append(_run(GET_PRODUCT, lambda: _get_product(calls, product)))
        results.append(_run(SEARCH, lambda: _search(calls, product)))
    else:
        reason = "not run: the listing returned no product to check it with"
        results += [CheckResult(GET_PRODUCT, False, reason), CheckResult(SEARCH, False, reason)]
    bad_token = catalog_pb2.ListProductsRequest(page_token=INVALID_PAGE_TOKEN)
    results.append(_run(BAD_PAGE_TOKEN, lambda: _refused(calls, bad_token, "a page token it never issued")))
    negative = catalog_pb2.ListProductsRequest(page_size=-1)
    results.append(_run(NEGATIVE_PAGE_SIZE, lambda: _refused(calls, negative, "page_size -1")))
    results.append(_deadlines(calls))
    return results


def _run(name: str, check: Callable[[], str]) -> CheckResult:
    try:
        return CheckResult(name, True, check())
    except _CheckFailedError as failure:
        return CheckResult(name, False, str(failure))


def _health(calls: _Calls) -> str:
    statuses = {name: calls.call("Health/Check", serving_status, calls.health, name) for name in HEALTH_NAMES}
    shown = {name or '"" (the server)': status for name, status in statuses.items()}
    wrong = [f"{name} is {status}" for name, status in shown.items() if status != "SERVING"]
    if wrong:
        raise _CheckFailedError(", ".join(wrong))
    return f"{' and '.join(shown)} SERVING"


def _list_pages(calls: _Calls, page_size: int, products: list[catalog_pb2.Product]) -> str:
    """Walk every page; the products walked must be total_count distinct ones. Fills `products`."""
    seen: set[str] = set()
    tokens = {""}
    token = ""
    total: int | None = None
    pages = 0
    while True:
        request = catalog_pb2.ListProductsRequest(page_size=page_size, page_token=token)
        page = calls.call("ListProducts", calls.catalog.ListProducts, request)
        pages += 1
        if total is None:
            total = page.total_count
        elif page.total_count != total:
            raise _CheckFailedError(f"page {pages} says total_count {page.total_count}, page 1 said {total}")
        for product in page.products:
            if product.id in seen:
                raise _CheckFailedError(f"product {product.id!r} was listed twice (again on page {pages})")
            seen.add(product.id)
            products.append(product)
        if len(seen) > total:
            raise _CheckFailedError(f"page {pages} lists product {len(seen)}, beyond total_count {total}")
        token = page.next_page_token
        if not token:
            break
        if not page.products:
            raise _CheckFailedError(f"page {pages} is empty but has a next page token")
        if token in tokens:
            raise _CheckFailedError(f"page {pages} repeats the page token {token!r}")
        tokens.add(token)
    if total == 0 and not seen:
        raise _CheckFailedError("the catalog is empty: ListProducts lists no product (total_count 0)")
    walked = f"{counted(len(seen), 'product')} over {counted(pages, 'page')}"
    if len(seen) != total:
        raise _CheckFailedError(f"{walked}, but total_count says {total}")
    return f"{walked} {plural(len(seen), 'agrees', 'agree')} with total_count"


def _get_product(calls: _Calls, listed: catalog_pb2.Product) -> str:
    request = catalog_pb2.GetProductRequest(id=listed.id)
    got = calls.call("GetProduct", calls.catalog.GetProduct, request)
    if got != listed:
        fields = [
            field.name
            for field in catalog_pb2.Product.DESCRIPTOR.fields
            if getattr(got, field.name) != getattr(listed, field.name)
        ]
        raise _CheckFailedError(
            f"GetProduct({listed.id!r}) differs from the listed product in {', '.join(fields)}"
        )
    return f"GetProduct({listed.id!r}) returns the listed product"


def _search(calls: _Calls, listed: catalog_pb2.Product) -> str:
    if not listed.name:
        raise _CheckFailedError(f"product {listed.id!r} has no name to search for")
    request = catalog_pb2.SearchRequest(query=listed.name, max_results=_SEARCH_MAX_RESULTS)
    stream = calls.catalog.SearchProducts(request, timeout=calls.timeout)
    results = 0
    for product in calls.stream("SearchProducts", stream):
        results += 1
        if product.id == listed.id:
            stream.cancel()  # found: the rest of the stream is not needed
            return f"a search for {listed.name!r} finds product {listed.id!r}"
    raise _CheckFailedError(
        f"a search for {listed.name!r} did not find product {listed.id!r} ({counted(results, 'result')})"
    )


def _refused(calls: _Calls, request: catalog_pb2.ListProductsRequest, what: str) -> str:
    calls.made += 1
    try:
        calls.catalog.ListProducts(request, timeout=calls.timeout)
    except grpc.RpcError as error:
        code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return f"ListProducts refuses {what} with INVALID_ARGUMENT"
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            calls.expired.append("ListProducts")
        # UNKNOWN is what an exception escaping a handler becomes: the server did not validate the request.
        raise _CheckFailedError(
            f"ListProducts answered {what} with {status_line(error)}, not INVALID_ARGUMENT"
        ) from error
    raise _CheckFailedError(f"ListProducts accepted {what}, instead of INVALID_ARGUMENT")


def _deadlines(calls: _Calls) -> CheckResult:
    if calls.expired:
        late = f"{len(calls.expired)} of {counted(calls.made, 'call')}"
        detail = f"{late} did not finish within {calls.timeout:g} s: {', '.join(calls.expired)}"
        return CheckResult(DEADLINES, False, detail)
    return CheckResult(
        DEADLINES, True, f"all {counted(calls.made, 'call')} finished within {calls.timeout:g} s"
    )
