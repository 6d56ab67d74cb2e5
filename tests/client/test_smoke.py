"""The smoke check: passes against the real server; each server that breaks one check fails, naming it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from catalog import catalog_pb2
from client.channel import Transport, open_channel
from client.commands import EXIT_OK, EXIT_SMOKE_FAILED
from client.smoke import (
    BAD_PAGE_TOKEN,
    CHECKS,
    DEADLINES,
    GET_PRODUCT,
    HEALTH,
    LIST_PAGES,
    NEGATIVE_PAGE_SIZE,
    SEARCH,
    run_smoke,
)
from service.call_guard import Context
from service.catalog_file import load_catalog
from service.servicer import Catalog, CatalogServicer
from service.store import CatalogStore
from tests.client.conftest import Cli
from tests.client.servers import SelfSignedCert, StallingServicer, TokenCheck, many_products, serve
from tests.client.stubs import IdTokenStub
from tests.client.test_transport import free_port


def failed_checks(out: str) -> list[str]:
    """The names of the FAIL lines of `smoke`'s text output."""
    return [line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("FAIL ")]


def test_smoke_passes_against_the_real_server(cli: Cli, seed_target: str) -> None:
    result = cli("--plaintext", seed_target, "smoke")
    assert result.code == EXIT_OK, result.out
    lines = result.lines
    assert [line.split()[:2] for line in lines[:-1]] == [["PASS", f"{name}:"] for name in CHECKS]
    assert lines[-1] == f"smoke: all {len(CHECKS)} checks passed"
    assert 'PASS health: "" (the server) and catalog.ProductCatalog SERVING' in lines
    assert "PASS list-pages: 5 products over 1 page agree with total_count" in lines


def test_smoke_json_lines(cli: Cli, seed_target: str) -> None:
    result = cli("--plaintext", seed_target, "smoke", "--json")
    assert result.code == EXIT_OK
    checks = [json.loads(line) for line in result.lines]
    assert [check["check"] for check in checks] == list(CHECKS)
    assert all(check["passed"] is True and check["detail"] for check in checks)


def test_run_smoke_walks_many_pages(seed_target: str) -> None:
    # The API a release tool calls in-process, with a page small enough to make the listing walk.
    with open_channel(seed_target, Transport(plaintext=True), None) as channel:
        results = run_smoke(channel, timeout=10, page_size=2)
    assert [result.name for result in results] == list(CHECKS)
    assert all(result.passed for result in results), [str(result) for result in results]
    assert results[1].detail == "5 products over 3 pages agree with total_count"
    assert results[-1].detail == "all 9 calls finished within 10 s"


def test_smoke_passes_against_another_catalog(cli: Cli) -> None:
    with serve(CatalogServicer(many_products(2500))) as server:
        result = cli("--plaintext", server.target, "smoke")
    assert result.code == EXIT_OK, result.out
    assert "PASS list-pages: 2500 products over 3 pages agree with total_count" in result.lines
    assert "PASS search: a search for 'Item 0' finds product 'p0000'" in result.lines


def test_smoke_over_tls_with_an_id_token(
    cli: Cli, cert: SelfSignedCert, ca_file: Path, id_tokens: IdTokenStub
) -> None:
    # The transport and auth options apply to smoke as to every command: each of its calls carries the token.
    token_check = TokenCheck(accepted=lambda token: token == "id-1")
    with serve(tls=cert, interceptors=[token_check]) as server:
        result = cli(
            "--ca-cert",
            str(ca_file),
            "--id-token",
            "--audience",
            "https://shop.example",
            server.target,
            "smoke",
        )
    assert result.code == EXIT_OK, result.out
    assert id_tokens.audiences == ["https://shop.example"]
    assert token_check.seen == ["Bearer id-1"] * 7


def test_smoke_without_the_token_a_private_server_wants(
    cli: Cli, cert: SelfSignedCert, ca_file: Path
) -> None:
    with serve(tls=cert, interceptors=[TokenCheck(accepted=lambda token: True)]) as server:
        result = cli("--ca-cert", str(ca_file), server.target, "smoke")
    assert result.code == EXIT_SMOKE_FAILED
    assert (
        "FAIL health: Health/Check failed: UNAUTHENTICATED: missing or invalid bearer token" in result.lines
    )


# Servers that break one check each.


class WrongTotal(CatalogServicer):
    """Counts one product more than it lists."""

    async def ListProducts(self, request: catalog_pb2.ListProductsRequest, context: Context) -> bytes:
        page = catalog_pb2.ListProductsResponse.FromString(await super().ListProducts(request, context))
        page.total_count += 1
        return page.SerializeToString()


class RepeatingToken(CatalogServicer):
    """The second page hands out the first page's token again: a walk that would never end."""

    async def ListProducts(self, request: catalog_pb2.ListProductsRequest, context: Context) -> bytes:
        page = catalog_pb2.ListProductsResponse.FromString(await super().ListProducts(request, context))
        if request.page_token:
            page.next_page_token = request.page_token
        return page.SerializeToString()


class WrongProduct(CatalogServicer):
    """GetProduct answers with a stale price."""

    async def GetProduct(self, request: bytes, context: Context) -> bytes:
        product = catalog_pb2.Product.FromString(await super().GetProduct(request, context))
        product.price += 1
        return product.SerializeToString()


class BlindSearch(CatalogServicer):
    """A search index that finds nothing."""

    async def SearchProducts(
        self, request: catalog_pb2.SearchRequest, context: Context
    ) -> AsyncIterator[bytes]:
        for _ in ():
            yield b""


class TokenIgnoring(CatalogServicer):
    """A page token it did not issue starts the list over instead of being refused."""

    def __init__(self, store: Catalog) -> None:
        super().__init__(store)
        self.issued: set[str] = set()

    async def ListProducts(self, request: catalog_pb2.ListProductsRequest, context: Context) -> bytes:
        if request.page_token not in self.issued:
            request = catalog_pb2.ListProductsRequest(page_size=request.page_size, category=request.category)
        page = catalog_pb2.ListProductsResponse.FromString(await super().ListProducts(request, context))
        self.issued.add(page.next_page_token)
        return page.SerializeToString()


class TokenCrashing(TokenIgnoring):
    """A page token it did not issue raises in the handler: UNKNOWN, not INVALID_ARGUMENT."""

    async def ListProducts(self, request: catalog_pb2.ListProductsRequest, context: Context) -> bytes:
        if request.page_token and request.page_token not in self.issued:
            raise ValueError("cannot decode the page token")
        return await super().ListProducts(request, context)


class NegativePageSizeCrashing(CatalogServicer):
    """A negative page size slices the catalog from the end and fails: UNKNOWN."""

    async def ListProducts(self, request: catalog_pb2.ListProductsRequest, context: Context) -> bytes:
        if request.page_size < 0:
            raise IndexError("negative page size")
        return await super().ListProducts(request, context)


class NegativePageSizeAccepting(CatalogServicer):
    """A negative page size is taken as the default one."""

    async def ListProducts(self, request: catalog_pb2.ListProductsRequest, context: Context) -> bytes:
        if request.page_size < 0:
            request = catalog_pb2.ListProductsRequest(
                page_token=request.page_token, category=request.category
            )
        return await super().ListProducts(request, context)


def seed(servicer: Callable[[Catalog], CatalogServicer]) -> Callable[[], Any]:
    return lambda: servicer(load_catalog())


@pytest.mark.parametrize(
    ("make_servicer", "failed", "message"),
    [
        (seed(WrongTotal), [LIST_PAGES], "FAIL list-pages: 5 products over 1 page, but total_count says 6"),
        (
            lambda: RepeatingToken(many_products(1500)),
            [LIST_PAGES],
            "FAIL list-pages: page 2 repeats the page token ",
        ),
        (
            seed(WrongProduct),
            [GET_PRODUCT],
            "FAIL get-product: GetProduct('1') differs from the listed product in price",
        ),
        (
            seed(BlindSearch),
            [SEARCH],
            "FAIL search: a search for 'Laptop Pro 16' did not find product '1' (0 results)",
        ),
        (
            seed(TokenIgnoring),
            [BAD_PAGE_TOKEN],
            "FAIL bad-page-token: ListProducts accepted a page token it never issued, instead of INVALID_",
        ),
        (
            seed(TokenCrashing),
            [BAD_PAGE_TOKEN],
            "FAIL bad-page-token: ListProducts answered a page token it never issued with UNKNOWN: ",
        ),
        (
            seed(NegativePageSizeCrashing),
            [NEGATIVE_PAGE_SIZE],
            "FAIL negative-page-size: ListProducts answered page_size -1 with UNKNOWN: ",
        ),
        (
            seed(NegativePageSizeAccepting),
            [NEGATIVE_PAGE_SIZE],
            "FAIL negative-page-size: ListProducts accepted page_size -1, instead of INVALID_ARGUMENT",
        ),
        (
            lambda: CatalogServicer(CatalogStore.from_products([])),
            [LIST_PAGES, GET_PRODUCT, SEARCH],
            "FAIL list-pages: the catalog is empty: ListProducts lists no product (total_count 0)",
        ),
    ],
    ids=[
        "wrong-total",
        "repeated-token",
        "wrong-product",
        "blind-search",
        "bad-token-accepted",
        "bad-token-unknown",
        "negative-size-unknown",
        "negative-size-accepted",
        "empty-catalog",
    ],
)
def test_a_broken_server_fails_the_check_it_breaks(
    cli: Cli,
    make_servicer: Callable[[], CatalogServicer],
    failed: list[str],
    message: str,
) -> None:
    with serve(make_servicer()) as server:
        result = cli("--plaintext", server.target, "smoke")
    assert result.code == EXIT_SMOKE_FAILED
    assert failed_checks(result.out) == failed
    assert any(line.startswith(message) for line in result.lines), result.out
    assert result.lines[-1] == f"smoke: {len(failed)} of {len(CHECKS)} checks failed: {', '.join(failed)}"


def test_a_server_not_serving_the_catalog_fails_health(cli: Cli) -> None:
    with serve(health_names=("",)) as server:
        result = cli("--plaintext", server.target, "smoke")
    assert result.code == EXIT_SMOKE_FAILED
    assert failed_checks(result.out) == [HEALTH]
    assert "FAIL health: catalog.ProductCatalog is SERVICE_UNKNOWN" in result.lines


def test_a_call_past_its_deadline_fails_its_check_and_deadlines(cli: Cli) -> None:
    servicer = StallingServicer()
    with serve(servicer) as server:
        try:
            result = cli("--plaintext", "--timeout", "0.5", server.target, "smoke")
        finally:
            servicer.release.set()
    assert result.code == EXIT_SMOKE_FAILED
    assert failed_checks(result.out) == [GET_PRODUCT, DEADLINES]
    assert "FAIL get-product: GetProduct failed: DEADLINE_EXCEEDED: Deadline Exceeded" in result.lines
    assert "FAIL deadlines: 1 of 7 calls did not finish within 0.5 s: GetProduct" in result.lines


def test_an_unreachable_server_fails_every_check(cli: Cli) -> None:
    result = cli("--plaintext", "--timeout", "2", f"localhost:{free_port()}", "smoke")
    assert result.code == EXIT_SMOKE_FAILED
    assert failed_checks(result.out) == [
        HEALTH,
        LIST_PAGES,
        GET_PRODUCT,
        SEARCH,
        BAD_PAGE_TOKEN,
        NEGATIVE_PAGE_SIZE,
    ]
    assert "FAIL health: Health/Check failed: UNAVAILABLE: " in result.out


def test_rpc_errors_never_escape_run_smoke() -> None:
    # The release tool reads results; a dead candidate must not raise instead.
    with grpc.insecure_channel(f"localhost:{free_port()}") as channel:
        results = run_smoke(channel, timeout=1)
    assert [result.name for result in results] == list(CHECKS)
    assert not any(result.passed for result in results[:-1])
