"""The indexed store gives the seed's answers: property tests against a straightforward reference.

The reference is the seed's semantics written as plainly as possible: filter the catalog by category,
slice it for a page; a product matches a search iff the lower-cased query is in its lower-cased name or
description, in catalog order, first `limit` only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

import grpc
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cases import reference_search
from catalog import catalog_pb2
from catalog.catalog_pb2 import Product
from service.catalog_file import load_catalog
from service.search_index import SEARCH_STEP
from service.servicer import CatalogServicer
from service.store import CatalogStore

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters that make case-insensitive matching interesting: case pairs, letters whose lower case is
# longer ('İ' -> 'i̇') or context-dependent ('Σ'), ligatures, combining marks, and several kinds of
# whitespace (the index splits text into words on whitespace).
ALPHABET = "abcAB  \t\n\xa0\u2003-,.İiı̇ΣσςßẞǅǆﬁéE\u0301ж"  # noqa: RUF001  # look-alikes on purpose
CATEGORIES = ("", "a", "b", "B", "kitchen")

texts = st.text(alphabet=ALPHABET, max_size=12)


@st.composite
def catalogs(draw: st.DrawFn, max_size: int = 40) -> list[Product]:
    count = draw(st.integers(min_value=0, max_value=max_size))
    return [
        Product(
            id=f"id{i}",
            name=draw(texts.filter(bool)),
            description=draw(texts),
            price=float(i),
            category=draw(st.sampled_from(CATEGORIES)),
            in_stock=draw(st.booleans()),
        )
        for i in range(count)
    ]


def serialized(products: Iterable[Product]) -> list[bytes]:
    """Products as the server sends them: what the store's answers must equal, byte for byte."""
    return [product.SerializeToString() for product in products]


def reference_answers(products: Sequence[Product], query: str, limit: int) -> list[bytes]:
    """The seed's search answers, serialized."""
    return serialized(reference_search(products, query, limit))


def ids(answers: Iterable[bytes]) -> list[str]:
    return [Product.FromString(answer).id for answer in answers]


def reference_filter(products: Sequence[Product], category: str) -> list[Product]:
    return [p for p in products if not category or p.category == category]


@st.composite
def queries(draw: st.DrawFn, products: Sequence[Product]) -> str:
    """Present substrings (as written, upper- or swapped-case), random text, or whitespace."""
    fields = [text for p in products for text in (p.name, p.description) if text]
    kind = draw(st.sampled_from(["substring", "random", "whitespace"] if fields else ["random"]))
    if kind == "substring":
        field = draw(st.sampled_from(fields))
        start = draw(st.integers(0, len(field) - 1))
        end = draw(st.integers(start + 1, len(field)))
        query = field[start:end]
        cases: list[Callable[[str], str]] = [str, str.upper, str.lower, str.swapcase]
        return draw(st.sampled_from(cases))(query)
    if kind == "whitespace":
        return draw(st.text(alphabet=" \t\n\xa0", min_size=1, max_size=3))
    return draw(st.text(alphabet=ALPHABET + "xyz", min_size=1, max_size=6))


@PROPERTY_SETTINGS
@given(data=st.data(), products=catalogs())
def test_search_matches_the_reference(data: st.DataObject, products: list[Product]) -> None:
    store = CatalogStore.from_products(products)
    query = data.draw(queries(products), label="query")
    limit = data.draw(st.sampled_from([0, 1, 2, 3, 10, 1000]) | st.integers(-2, 50), label="limit")
    assert list(store.search(query, limit)) == reference_answers(products, query, limit)


@PROPERTY_SETTINGS
@given(data=st.data(), products=catalogs())
def test_search_before_the_index_is_ready_matches_the_reference(
    data: st.DataObject, products: list[Product]
) -> None:
    store = CatalogStore.from_products(products, search_index="never")  # scans, as before an index is built
    assert not store.indexed
    query = data.draw(queries(products), label="query")
    limit = data.draw(st.integers(-1, 50), label="limit")
    assert list(store.search(query, limit)) == reference_answers(products, query, limit)


def test_a_store_indexed_in_the_background_answers_the_same_before_and_after() -> None:
    products = [
        Product(id=str(i), name=f"Item {i}", description=f"word{i % 7} common", price=1) for i in range(3000)
    ]
    store = CatalogStore(products, search_index="background")
    queries = ("WORD3", "item 29", "common", "absent", "m 1")
    before = [list(store.search(query, 100)) for query in queries]
    assert store.wait_indexed(timeout=60)
    assert store.indexed
    after = [list(store.search(query, 100)) for query in queries]
    assert before == after == [reference_answers(products, query, 100) for query in queries]


@PROPERTY_SETTINGS
@given(products=catalogs(max_size=60), query=texts.filter(bool))
def test_search_for_any_text_matches_the_reference(products: list[Product], query: str) -> None:
    store = CatalogStore.from_products(products)
    assert list(store.search(query, 1000)) == reference_answers(products, query, 1000)


def test_search_handles_unicode_case_mapping() -> None:
    # 'İ'.lower() is 'i' + U+0307: a query for 'i̇' (or 'İ') finds it, a plain 'i' does too, as in the seed.
    products = [
        Product(id="1", name="İstanbul lamp", price=1),
        Product(id="2", name="ΟΔΟΣ", description="straße", price=1),
        Product(id="3", name="plain", description="i", price=1),
    ]
    store = CatalogStore.from_products(products)
    queries = ("İ", "i̇", "i", "İSTANBUL LAMP", "οδος", "ς", "σ", "STRASSE", "straSSe", "ß", "ẞ", "amp")  # noqa: RUF001
    for query in queries:
        assert list(store.search(query, 10)) == reference_answers(products, query, 10), query


def test_absent_text_finds_nothing_and_common_text_stops_at_the_limit() -> None:
    products = [
        Product(id=str(i), name=f"item {i}", description="a common word", price=1) for i in range(500)
    ]
    store = CatalogStore.from_products(products)
    assert list(store.search("zz", 10)) == []
    assert list(store.search("q", 10)) == []
    assert ids(store.search("COMMON", 3)) == ["0", "1", "2"]
    assert ids(store.search("m 4", 1000)) == [str(i) for i in range(500) if "m 4" in f"item {i}"]
    assert len(list(store.search("i", 1000))) == 500
    # One word is answered from the index unchecked; whitespace around it is part of the query, checked.
    assert len(list(store.search("word", 1000))) == 500
    assert list(store.search("word ", 10)) == []
    assert len(list(store.search(" word", 1000))) == 500


@PROPERTY_SETTINGS
@given(
    products=catalogs(),
    category=st.sampled_from(CATEGORIES),
    offset=st.integers(0, 45),
    limit=st.integers(0, 45),
)
def test_pages_and_totals_match_the_reference(
    products: list[Product], category: str, offset: int, limit: int
) -> None:
    store = CatalogStore.from_products(products)
    expected = reference_filter(products, category)
    assert store.count(category) == len(expected)
    assert store.page(category, offset, limit) == serialized(expected[offset : offset + limit])


class _AbortedError(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, details)
        self.code = code


class _Context:
    """Just enough of grpc.aio.ServicerContext to call the servicer's methods directly."""

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> NoReturn:
        raise _AbortedError(code, details)


def walk(servicer: CatalogServicer, category: str, page_size: int) -> list[catalog_pb2.ListProductsResponse]:
    pages = []
    token = ""
    while True:
        request = catalog_pb2.ListProductsRequest(page_size=page_size, page_token=token, category=category)
        answer = asyncio.run(servicer.ListProducts(request, _Context()))  # type: ignore[arg-type]
        page = catalog_pb2.ListProductsResponse.FromString(answer)  # the servicer answers serialized
        pages.append(page)
        token = page.next_page_token
        if not token:
            return pages
        assert len(pages) <= 100, "the walk does not end"


@PROPERTY_SETTINGS
@given(
    products=catalogs(),
    category=st.sampled_from(CATEGORIES),
    page_size=st.sampled_from([0, 1, 2, 3, 7, 1000, 5000]),
)
def test_page_walks_yield_the_filtered_catalog_once(
    products: list[Product], category: str, page_size: int
) -> None:
    servicer = CatalogServicer(CatalogStore.from_products(products))
    expected = reference_filter(products, category)
    pages = walk(servicer, category, page_size)
    size = min(page_size or 10, 1000)
    assert [p for page in pages for p in page.products] == expected
    assert {page.total_count for page in pages} == {len(expected)}
    assert all(len(page.products) == size for page in pages[:-1])
    assert len(pages) == max(1, -(-len(expected) // size))


@PROPERTY_SETTINGS
@given(data=st.data(), products=catalogs())
def test_search_rpc_streams_the_reference(data: st.DataObject, products: list[Product]) -> None:
    servicer = CatalogServicer(CatalogStore.from_products(products))
    query = data.draw(queries(products), label="query")
    max_results = data.draw(st.sampled_from([0, 1, 5, 1000, 5000]), label="max_results")
    request = catalog_pb2.SearchRequest(query=query, max_results=max_results)

    async def stream() -> list[Product]:
        found = servicer.SearchProducts(request, _Context())  # type: ignore[arg-type]
        return [Product.FromString(p) async for p in found]

    streamed = asyncio.run(stream())
    assert streamed == reference_search(products, query, min(max_results or 10, 1000))


@pytest.mark.parametrize("query", ["", " "])
def test_empty_and_blank_queries_in_the_store_follow_the_seed(query: str) -> None:
    products = [Product(id="1", name="a b", price=1), Product(id="2", name="ab", price=1)]
    store = CatalogStore.from_products(products)
    assert list(store.search(query, 10)) == reference_answers(products, query, 10)


json_items = st.fixed_dictionaries(
    {
        "id": st.text(min_size=1, max_size=5),
        "name": st.text(min_size=1, max_size=5),
        "price": st.integers(0, 2**40) | st.floats(0, 1e12, allow_nan=False, allow_infinity=False),
        "category": st.sampled_from(CATEGORIES),
    },
    optional={
        "description": st.text(max_size=5) | st.none(),
        "inStock": st.booleans() | st.none(),
        "in_stock": st.booleans(),
    },
)


@PROPERTY_SETTINGS
@given(items=st.lists(json_items, max_size=20, unique_by=lambda item: item["id"]))
def test_loading_follows_the_protobuf_json_mapping(
    tmp_path_factory: pytest.TempPathFactory, items: list[dict[str, Any]]
) -> None:
    # load_catalog decodes the common shape on a fast path; it must agree with protobuf's own parser.
    items = [item for item in items if not ("inStock" in item and "in_stock" in item)]
    path = tmp_path_factory.mktemp("catalog") / "catalog.json"
    path.write_text(json.dumps({"products": items}), encoding="utf-8")
    expected = [json_format.ParseDict(item, Product()) for item in items]
    store = load_catalog(path)
    assert len(store) == len(expected)
    assert [store.get(p.id) for p in expected] == serialized(expected)


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "scanning"])
def test_a_search_that_checks_the_whole_catalog_pauses_every_step(indexed: bool) -> None:
    count = 2 * SEARCH_STEP + 7
    products = [
        Product(id=str(i), name=f"Item {i}", description=f"Description {i}", price=1) for i in range(count)
    ]
    store = CatalogStore.from_products(products, search_index="now" if indexed else "never")
    assert store.indexed is indexed
    # Both pieces are in every product, so the index cannot narrow; the whole needle is in none.
    steps = list(store.search_in_steps("em desc", 10))
    assert steps == [None] * 2  # a pause between every two steps of SEARCH_STEP products; none after the last
    # Matches come between the pauses, in catalog order, and the search stops at the limit.
    steps = list(store.search_in_steps("item", 2 * SEARCH_STEP + 1))
    assert [Product.FromString(p).id if p else None for p in steps] == [
        *map(str, range(SEARCH_STEP)),
        None,
        *map(str, range(SEARCH_STEP, 2 * SEARCH_STEP)),
        None,
        str(2 * SEARCH_STEP),
    ]
