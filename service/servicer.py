"""The gRPC face of the catalog: validate each request, ask the store, answer with the store's bytes.

Methods are coroutines for grpc.aio. The store is plain synchronous Python and answers in microseconds,
so it is called on the event loop directly: handing it to a thread would cost more than the answer.

The store holds each product serialized, and the answers are written from those bytes: the methods'
response serializers pass bytes through (`add_to_server`), so no Product message is built or serialized
per call. A ListProductsResponse is the products' bytes, each framed as field 1, then the other fields:
protobuf messages may be concatenated, and repeated fields appear in the order written.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, NoReturn, Protocol

import grpc
from google.protobuf.message import DecodeError

from catalog import SERVICE_NAME, catalog_pb2
from service.call_guard import Context, reject_malformed
from service.catalog_file import EMBEDDED_CATALOG, CatalogUnreadableError, load_catalog
from service.config import Settings
from service.pagination import InvalidPageTokenError, decode_page_token, encode_page_token
from service.served import ServedApi
from service.store import CatalogError

DEFAULT_PAGE_SIZE = 10  # the seed's default, for both page_size and max_results
MAX_PAGE_SIZE = 1000  # larger requests are coerced down (AIP-158), not refused
# ListProductsResponse.products (field 1, length-delimited): the tag byte before each product's length.
_PRODUCTS_TAG = b"\x0a"


class Catalog(Protocol):
    """What the servicer asks of a catalog: service.store.CatalogStore, or a test's fake.

    Products come serialized (catalog.Product's wire format), as the store holds them.
    """

    @property
    def fingerprint(self) -> bytes:
        """Identifies the catalog, so a page token from another one is refused."""
        ...

    def __len__(self) -> int: ...

    def get(self, product_id: str) -> bytes | None:
        """The product with this id, serialized (a catalog.Product), or None."""
        ...

    def get_by_id_field(self, id_field: bytes) -> bytes | None:
        """The product that begins with this id field (tag, one-byte length, id), serialized, or None."""
        ...

    def count(self, category: str) -> int:
        """How many products match this category filter ("" = all)."""
        ...

    def page(self, category: str, offset: int, limit: int) -> Sequence[bytes]:
        """Matching products offset..offset+limit, in catalog order, serialized."""
        ...

    def search_in_steps(self, query: str, limit: int) -> Iterator[bytes | None]:
        """The first `limit` products containing `query`, case-insensitively, serialized.

        A None between steps of the search, where the caller may let other calls run.
        """
        ...


class CatalogMethods(Protocol):
    """The API's methods as a servicer has them: coroutines here, functions on grpc's thread-pool server."""

    def GetProduct(self, request: Any, context: Any) -> Any:
        """Answer a GetProductRequest with a serialized Product."""
        ...

    def ListProducts(self, request: Any, context: Any) -> Any:
        """Answer a ListProductsRequest with a serialized ListProductsResponse."""
        ...

    def SearchProducts(self, request: Any, context: Any) -> Any:
        """Answer a SearchRequest with serialized Products, streamed."""
        ...


def add_to_server(servicer: CatalogMethods, server: Any) -> None:
    """Add `servicer`'s methods to `server`, as the generated `add_ProductCatalogServicer_to_server` does.

    But the responses are the bytes the methods return, already serialized, passed through as they are.
    """
    handlers = method_handlers(servicer)
    # Both, as the generated function does: a server with interceptors looks methods up in the generic one.
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def method_handlers(servicer: CatalogMethods) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    """`servicer`'s method handlers by method name: requests parsed, responses passed through as bytes."""
    return {
        "GetProduct": grpc.unary_unary_rpc_method_handler(
            servicer.GetProduct,  # parses its request only when it must (CatalogServicer.GetProduct)
            response_serializer=_as_is,
        ),
        "ListProducts": grpc.unary_unary_rpc_method_handler(
            servicer.ListProducts,
            request_deserializer=catalog_pb2.ListProductsRequest.FromString,
            response_serializer=_as_is,
        ),
        "SearchProducts": grpc.unary_stream_rpc_method_handler(
            servicer.SearchProducts,
            request_deserializer=catalog_pb2.SearchRequest.FromString,
            response_serializer=_as_is,
        ),
    }


def _as_is(message: bytes) -> bytes:
    return message


def list_response(products: Sequence[bytes], next_page_token: str, total_count: int) -> bytes:
    """A serialized ListProductsResponse: each product's bytes framed as field 1, then fields 2 and 3."""
    parts: list[bytes] = []
    for product in products:
        parts += (_PRODUCTS_TAG, _varint(len(product)), product)
    tail = catalog_pb2.ListProductsResponse(next_page_token=next_page_token, total_count=total_count)
    parts.append(tail.SerializeToString())
    return b"".join(parts)


def _varint(value: int) -> bytes:
    """`value` (not negative) as a protobuf base-128 varint."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class CatalogServicer:
    """catalog.ProductCatalog over a loaded catalog, answering serialized messages (see add_to_server).

    Not a subclass of the generated ProductCatalogServicer, whose methods return messages.
    """

    def __init__(self, store: Catalog) -> None:
        self._store = store

    async def GetProduct(self, request: bytes, context: Context) -> bytes:
        """Return one product by id, from the request's bytes (`method_handlers` does not parse them).

        A GetProductRequest is one field, id, which is also a Product's first: the store finds a request as
        clients write it at the start of its product. Anything else, and an id not found, is parsed and
        answered by its parsed id, so every encoding of a request gets the answer protobuf reads in it.
        """
        product = self._store.get_by_id_field(request)
        if product is None:
            product = await self._get_parsed(request, context)
        return product

    async def _get_parsed(self, request: bytes, context: Context) -> bytes:
        try:
            product_id = catalog_pb2.GetProductRequest.FromString(request).id
        except DecodeError:
            await reject_malformed(context, catalog_pb2.GetProductRequest.DESCRIPTOR.full_name)
        if not product_id:
            await abort_invalid_argument(context, "id", "must not be empty")
        product = self._store.get(product_id)
        if product is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"product {_shortened(product_id)} not found")
        return product

    async def ListProducts(self, request: catalog_pb2.ListProductsRequest, context: Context) -> bytes:
        """Return one page of products in catalog order, optionally filtered by category."""
        store = self._store
        page_size = await _limit(context, "page_size", request.page_size)
        offset = 0
        if request.page_token:
            try:
                offset = decode_page_token(request.page_token, request.category, store.fingerprint)
            except InvalidPageTokenError as error:
                await abort_invalid_argument(context, "page_token", str(error))
        total = store.count(request.category)
        if offset >= total and request.page_token:
            await abort_invalid_argument(context, "page_token", "points past the end of the list")
        end = offset + page_size
        next_token = encode_page_token(end, request.category, store.fingerprint) if end < total else ""
        return list_response(store.page(request.category, offset, page_size), next_token, total)

    async def SearchProducts(
        self, request: catalog_pb2.SearchRequest, context: Context
    ) -> AsyncIterator[bytes]:
        """Stream products whose name or description contains the query, case-insensitively.

        The store's search is lazy: each product is found just before it is sent, and each send hands
        the loop back to other calls, as does each stretch of the catalog checked without a match (the
        store's None), so a long search never holds the loop for long. A client that leaves (cancel,
        deadline) cancels this generator at its next send or pause, which ends the search.
        """
        store = self._store
        if not request.query:
            await abort_invalid_argument(context, "query", "must not be empty")
        max_results = await _limit(context, "max_results", request.max_results)
        for product in store.search_in_steps(request.query, max_results):
            if product is None:
                await asyncio.sleep(0)
            else:
                yield product


class LoadingServicer:
    """catalog.ProductCatalog while the catalog loads: every call UNAVAILABLE, which clients retry."""

    async def GetProduct(self, request: Any, context: Context) -> NoReturn:
        """Refuse: no catalog yet."""
        await _still_loading(context)

    async def ListProducts(self, request: Any, context: Context) -> NoReturn:
        """Refuse: no catalog yet."""
        await _still_loading(context)

    async def SearchProducts(self, request: Any, context: Context) -> AsyncIterator[bytes]:
        """Refuse: no catalog yet."""
        await _still_loading(context)
        yield b""  # pragma: no cover  # makes this an async generator, as gRPC expects


async def _still_loading(context: Context) -> NoReturn:
    await context.abort(grpc.StatusCode.UNAVAILABLE, "the catalog is still loading; retry shortly")
    raise AssertionError("abort returns only by raising")  # pragma: no cover


def _shortened(text: str, limit: int = 100) -> str:
    """Echo at most `limit` characters of client input: status messages travel in size-limited headers."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


async def _limit(context: Context, field: str, requested: int) -> int:
    """AIP-158 sizes: 0 means the default, above the maximum is coerced down, negative is an error."""
    if requested < 0:
        await abort_invalid_argument(context, field, f"must not be negative, got {requested}")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


async def abort_invalid_argument(context: Context, field: str, description: str) -> NoReturn:
    """End the call with INVALID_ARGUMENT and a google.rpc.BadRequest detail naming the field."""
    # Imported at the first invalid request rather than at start-up, of which they were a seventh.
    from google.protobuf import any_pb2  # noqa: PLC0415
    from google.rpc import code_pb2, error_details_pb2, status_pb2  # noqa: PLC0415
    from grpc_status import rpc_status  # noqa: PLC0415

    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
            ]
        )
    )
    status = status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT, message=f"invalid {field}: {description}", details=[detail]
    )
    grpc_status = rpc_status.to_status(status)  # the details travel in the trailing metadata
    await context.abort(grpc_status.code, grpc_status.details, grpc_status.trailing_metadata)
    raise AssertionError("abort returns only by raising")  # pragma: no cover


def _load(settings: Settings) -> Catalog:
    return load_catalog(settings.catalog_path, expected_sha256=settings.catalog_sha256)


def _loaded(settings: Settings, store: Catalog) -> str:
    path = settings.catalog_path or EMBEDDED_CATALOG
    return f"catalog {path}: {len(store)} products, sha256 {store.fingerprint.hex()}"


# What the server serves (service/served.py): the catalog API over the catalog CATALOG_PATH names.
SERVED = ServedApi[Catalog](
    register=add_to_server,
    servicer=CatalogServicer,
    load=_load,
    data_name="catalog",
    loaded=_loaded,
    served=lambda store: f"{len(store)} products",
    unreadable=CatalogUnreadableError,
    invalid=CatalogError,
    loading=LoadingServicer(),
)
