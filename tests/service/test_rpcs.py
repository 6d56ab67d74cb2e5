"""Every catalog RPC against a real in-process server: answers, pagination walks, and each error code."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from catalog import SERVICE_NAME, catalog_pb2, catalog_pb2_grpc
from service.servicer import list_response
from service.store import CatalogStore
from tests.service.helpers import make_products, serving

Stub = catalog_pb2_grpc.ProductCatalogStub


def field_violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    """The google.rpc.BadRequest field violations an error carries."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "INVALID_ARGUMENT without google.rpc.Status details"
    violations = []
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        assert detail.Unpack(bad_request)
        violations += [(v.field, v.description) for v in bad_request.field_violations]
    return violations


def expect_invalid(call: object, field: str) -> grpc.RpcError:
    """Assert the call raised INVALID_ARGUMENT with a BadRequest detail naming `field`."""
    assert isinstance(call, grpc.RpcError)
    assert call.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in str(call.details())
    assert [f for f, _ in field_violations(call)] == [field]
    return call


@pytest.fixture
def big_stub() -> Iterator[Stub]:
    """A server over 250 products in 3 categories."""
    with serving(CatalogStore.from_products(make_products(250))) as stub:
        yield stub


# GetProduct


def test_get_product_returns_the_seed_product(stub: Stub) -> None:
    product = stub.GetProduct(catalog_pb2.GetProductRequest(id="3"), timeout=5)
    assert product == catalog_pb2.Product(
        id="3",
        name="Standing Desk",
        description="Adjustable standing desk",
        price=599.99,
        category="furniture",
        in_stock=False,
    )


def test_get_unknown_product_is_not_found_naming_the_id(stub: Stub) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetProduct(catalog_pb2.GetProductRequest(id="nope"), timeout=5)
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == "product nope not found"


def test_get_with_empty_id_is_invalid(stub: Stub) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetProduct(catalog_pb2.GetProductRequest(), timeout=5)
    expect_invalid(raised.value, "id")


# ListProducts


def test_list_defaults_to_ten_in_catalog_order(big_stub: Stub) -> None:
    page = big_stub.ListProducts(catalog_pb2.ListProductsRequest(), timeout=5)
    assert [p.id for p in page.products] == [f"p{i}" for i in range(10)]
    assert page.total_count == 250
    assert page.next_page_token


def test_list_filters_by_exact_category_and_counts_matches(stub: Stub) -> None:
    page = stub.ListProducts(catalog_pb2.ListProductsRequest(category="furniture"), timeout=5)
    assert [p.id for p in page.products] == ["3", "5"]
    assert page.total_count == 2
    assert page.next_page_token == ""
    for near_miss in ("Furniture", "furn", "furniture "):
        page = stub.ListProducts(catalog_pb2.ListProductsRequest(category=near_miss), timeout=5)
        assert (list(page.products), page.total_count, page.next_page_token) == ([], 0, "")


@pytest.mark.parametrize("category", ["", "tools", "toys", "books"])
@pytest.mark.parametrize("page_size", [1, 7, 83, 84, 1000])
def test_walking_all_pages_yields_each_match_once_in_order(
    big_stub: Stub, category: str, page_size: int
) -> None:
    expected = [p.id for p in make_products(250) if not category or p.category == category]
    seen: list[str] = []
    token = ""
    while True:
        page = big_stub.ListProducts(
            catalog_pb2.ListProductsRequest(category=category, page_size=page_size, page_token=token),
            timeout=5,
        )
        assert page.total_count == len(expected)
        seen += [p.id for p in page.products]
        token = page.next_page_token
        if not token:
            break
        assert len(page.products) == page_size  # only the last page may be short
    assert seen == expected


def test_list_page_size_above_maximum_is_coerced_to_1000() -> None:
    with serving(CatalogStore.from_products(make_products(1500))) as stub:
        page = stub.ListProducts(catalog_pb2.ListProductsRequest(page_size=5000), timeout=10)
    assert len(page.products) == 1000
    assert page.next_page_token


def test_list_negative_page_size_is_invalid(stub: Stub) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.ListProducts(catalog_pb2.ListProductsRequest(page_size=-1), timeout=5)
    expect_invalid(raised.value, "page_size")


@pytest.mark.parametrize("token", ["5", "garbage!", "AQAAAAI", "AQAAAAI27DRyFldB5yqB7Yx", "%%%"])
def test_list_page_token_not_issued_is_invalid(big_stub: Stub, token: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        big_stub.ListProducts(catalog_pb2.ListProductsRequest(page_token=token), timeout=5)
    expect_invalid(raised.value, "page_token")


def test_list_page_token_from_another_filter_is_invalid(big_stub: Stub) -> None:
    first = big_stub.ListProducts(catalog_pb2.ListProductsRequest(category="tools"), timeout=5)
    with pytest.raises(grpc.RpcError) as raised:
        big_stub.ListProducts(
            catalog_pb2.ListProductsRequest(category="toys", page_token=first.next_page_token), timeout=5
        )
    expect_invalid(raised.value, "page_token")


def test_list_page_token_from_another_catalog_is_invalid(big_stub: Stub) -> None:
    with serving(CatalogStore.from_products(make_products(251))) as stub:
        token = stub.ListProducts(catalog_pb2.ListProductsRequest(), timeout=5).next_page_token
    with pytest.raises(grpc.RpcError) as raised:
        big_stub.ListProducts(catalog_pb2.ListProductsRequest(page_token=token), timeout=5)
    expect_invalid(raised.value, "page_token")


def test_page_tokens_work_across_servers_with_the_same_catalog(big_stub: Stub) -> None:
    with serving(CatalogStore.from_products(make_products(250))) as stub:
        token = stub.ListProducts(catalog_pb2.ListProductsRequest(page_size=100), timeout=5).next_page_token
    page = big_stub.ListProducts(catalog_pb2.ListProductsRequest(page_size=100, page_token=token), timeout=5)
    assert page.products[0].id == "p100"


# SearchProducts


def search_ids(stub: Stub, query: str, max_results: int = 0) -> list[str]:
    """Ids the search stream delivers."""
    request = catalog_pb2.SearchRequest(query=query, max_results=max_results)
    return [p.id for p in stub.SearchProducts(request, timeout=5)]


def test_search_is_case_insensitive_on_name_and_description(stub: Stub) -> None:
    assert search_ids(stub, "DESK") == ["3", "5"]
    assert search_ids(stub, "ergonomic") == ["2"]  # description only
    assert search_ids(stub, "monitor 27") == ["4"]  # name only
    assert search_ids(stub, "nothing like it") == []


def test_search_does_not_match_across_name_and_description(stub: Stub) -> None:
    assert search_ids(stub, "16high") == []
    assert search_ids(stub, "16\nhigh") == []


def test_search_max_results_defaults_to_ten_and_caps_at_1000(big_stub: Stub) -> None:
    assert search_ids(big_stub, "item") == [f"p{i}" for i in range(10)]
    assert search_ids(big_stub, "item", 3) == ["p0", "p1", "p2"]
    assert len(search_ids(big_stub, "item", 100_000)) == 250


def test_search_max_results_coerced_to_1000() -> None:
    with serving(CatalogStore.from_products(make_products(1200))) as stub:
        assert len(search_ids(stub, "item", 5000)) == 1000


def test_search_empty_query_is_invalid(stub: Stub) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        search_ids(stub, "")
    expect_invalid(raised.value, "query")


def test_search_negative_max_results_is_invalid(stub: Stub) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        search_ids(stub, "desk", -5)
    expect_invalid(raised.value, "max_results")


def test_search_stream_can_be_cancelled_midway(big_stub: Stub) -> None:
    stream = big_stub.SearchProducts(catalog_pb2.SearchRequest(query="item", max_results=250), timeout=5)
    assert next(stream).id == "p0"
    stream.cancel()
    with pytest.raises(grpc.RpcError) as raised:
        list(stream)
    assert raised.value.code() is grpc.StatusCode.CANCELLED
    assert search_ids(big_stub, "item 249") == ["p249"]  # the server carries on


# Bad bytes and bugs never crash a worker, leak a traceback, or end in UNKNOWN.

# Each request's string field: GetProductRequest.id = 1, ListProductsRequest.page_token = 2,
# SearchRequest.query = 1.
STRING_TAGS = {"GetProduct": b"\x0a", "ListProducts": b"\x12", "SearchProducts": b"\x0a"}
MALFORMED = {
    "invalid UTF-8 in a string": b"\x05\xff\xfe\xfd\xfc\xfb",
    "length past the end": b"\x10short",
}
ENDLESS_VARINT = b"\x08" + b"\xff" * 11


def _raw(data: bytes) -> bytes:
    return data


def send_raw(channel: grpc.Channel, path: str, body: bytes, streaming: bool) -> None:
    """Send bytes as they are, bypassing the stubs' serializers."""
    if streaming:
        list(channel.unary_stream(path, _raw, _raw)(body, timeout=5))
    else:
        channel.unary_unary(path, _raw, _raw)(body, timeout=5)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"\x0a\x011", "1"),  # as clients write it: found from its bytes
        (b"\x0a\x011\x0a\x012", "2"),  # a field repeated: the last one counts, as protobuf says
        (b"\x0a\x011\x10\x07", "1"),  # a field this server does not know, from a newer client
        (b"\x10\x07\x0a\x011", "1"),  # the same, written first
        (b"\x0a\x81\x00" + b"1", "1"),  # the id's length as a longer varint than it needs
    ],
)
def test_get_product_answers_every_encoding_of_a_request_as_its_parsed_id(
    channel: grpc.Channel, body: bytes, expected: str
) -> None:
    answer = channel.unary_unary(f"/{SERVICE_NAME}/GetProduct", _raw, _raw)(body, timeout=5)
    assert catalog_pb2.Product.FromString(answer).id == expected


@pytest.mark.parametrize("problem", [*MALFORMED, "endless varint"])
@pytest.mark.parametrize("method", list(STRING_TAGS))
def test_malformed_request_bytes_are_invalid_argument(
    channel: grpc.Channel, stub: Stub, method: str, problem: str
) -> None:
    path = f"/{SERVICE_NAME}/{method}"
    body = ENDLESS_VARINT if problem == "endless varint" else STRING_TAGS[method] + MALFORMED[problem]
    with pytest.raises(grpc.RpcError) as raised:
        send_raw(channel, path, body, streaming=method == "SearchProducts")
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid catalog." in str(raised.value.details())
    assert "Exception" not in str(raised.value.details())
    assert stub.GetProduct(catalog_pb2.GetProductRequest(id="1"), timeout=5).id == "1"


class _BrokenStore(CatalogStore):
    def get(self, product_id: str) -> bytes | None:
        raise RuntimeError("secret internals")

    def get_by_id_field(self, id_field: bytes) -> bytes | None:
        raise RuntimeError("secret internals")


def test_a_bug_is_internal_without_its_text() -> None:
    store = _BrokenStore(make_products(3))
    with (
        serving(store) as stub,
        pytest.raises(grpc.RpcError) as raised,
    ):
        stub.GetProduct(catalog_pb2.GetProductRequest(id="p1"), timeout=5)
    assert raised.value.code() is grpc.StatusCode.INTERNAL
    assert "secret" not in str(raised.value.details())


def test_a_huge_unknown_id_is_not_found_with_a_short_message(stub: Stub) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetProduct(catalog_pb2.GetProductRequest(id="x" * 10_000), timeout=5)  # under MAX_REQUEST_BYTES
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == f"product {'x' * 100}... (10000 characters) not found"


@pytest.mark.parametrize("description_length", [0, 100, 200, 20_000])  # one-, two- and three-byte lengths
def test_a_page_written_from_bytes_is_the_message_protobuf_writes(description_length: int) -> None:
    products = [
        catalog_pb2.Product(id=f"p{i}", name="Item", description="d" * description_length * i, price=1.5)
        for i in range(3)
    ]
    written = list_response([p.SerializeToString() for p in products], "next", 42)
    expected = catalog_pb2.ListProductsResponse(products=products, next_page_token="next", total_count=42)
    assert written == expected.SerializeToString()
