"""A 100,000-product catalog loads and is served correctly (answers only: no timing is asserted here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from bench.cases import reference_search
from bench.catalog import generate_products, write_catalog
from catalog import catalog_pb2, catalog_pb2_grpc
from catalog.catalog_pb2 import Product
from service.catalog_file import load_catalog
from service.config import Settings
from tests.servers import in_process

pytestmark = pytest.mark.slow

COUNT = 100_000
Stub = catalog_pb2_grpc.ProductCatalogStub


@pytest.fixture(scope="module")
def products() -> list[Product]:
    return generate_products(COUNT)


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stub]:
    path = write_catalog(Path(tmp_path_factory.mktemp("scale")) / "catalog.json", COUNT)
    store = load_catalog(path)
    assert store.wait_indexed(timeout=120)  # search through the index, not the scan that precedes it
    with (
        in_process(Settings(port=0), store) as server,
        grpc.insecure_channel(f"localhost:{server.port}") as channel,
    ):
        yield catalog_pb2_grpc.ProductCatalogStub(channel)


def test_every_product_is_found_by_id(stub: Stub, products: list[Product]) -> None:
    for product in products[:: COUNT // 50] + products[-1:]:
        assert stub.GetProduct(catalog_pb2.GetProductRequest(id=product.id), timeout=10) == product


def test_a_category_walk_yields_the_category_in_order(stub: Stub, products: list[Product]) -> None:
    expected = [p for p in products if p.category == "garden"]
    walked: list[Product] = []
    token = ""
    while True:
        page = stub.ListProducts(
            catalog_pb2.ListProductsRequest(category="garden", page_size=1000, page_token=token), timeout=10
        )
        assert page.total_count == len(expected)
        walked += page.products
        token = page.next_page_token
        if not token:
            break
    assert walked == expected


@pytest.mark.parametrize(
    ("query", "max_results"),
    [
        ("wireless", 100),  # common: the first 100 in catalog order
        ("WIRELESS MOUSE", 1000),
        ("café bleu", 1000),  # non-ASCII
        ("zÜRICH, quiet", 50),
        ("p0", 10),  # no word has it: ids are not searched
        ("xylophone", 10),  # absent
        ("qx", 10),  # absent, two letters
        ("bamboo toaster", 10),  # both words common, never side by side
        ("a", 1000),
    ],
)
def test_search_gives_the_seed_answers(
    stub: Stub, products: list[Product], query: str, max_results: int
) -> None:
    streamed = list(
        stub.SearchProducts(catalog_pb2.SearchRequest(query=query, max_results=max_results), timeout=10)
    )
    assert streamed == reference_search(products, query, max_results)
