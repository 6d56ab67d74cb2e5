"""The gRPC face of the catalog: validate each request, ask the store, map the answer to protobuf.

Methods are coroutines for grpc.aio. The store is plain synchronous Python and answers in microseconds,
so it is called on the event loop directly: handing it to a thread would cost more than the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, NoReturn, Protocol

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from catalog import catalog_pb2, catalog_pb2_grpc
from service.call_guard import Context
from service.pagination import InvalidPageTokenError, decode_page_token, encode_page_token

DEFAULT_PAGE_SIZE = 10  # the seed's default, for both page_size and max_results
MAX_PAGE_SIZE = 1000  # larger requests are coerced down (AIP-158), not refused


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

    def count(self, category: str) -> int:
        """How many products match this category filter ("" = all)."""
        ...

    def page(self, category: str, offset: int, limit: int) -> Sequence[bytes]:
        """Matching products offset..offset+limit, in catalog order, serialized."""
        ...

    def search_in_steps(self, query: str, limit: int) -> Iterator[bytes | None]:
        """The first `limit` products containing `query` (any case), serialized; a None between steps."""
        ...


class CatalogServicer(catalog_pb2_grpc.ProductCatalogServicer):
    """catalog.ProductCatalog over a loaded catalog."""

    def __init__(self, store: Catalog) -> None:
        self._store = store

    async def GetProduct(
        self, request: catalog_pb2.GetProductRequest, context: Context
    ) -> catalog_pb2.Product:
        """Return one product by id."""
        store = self._store
        if not request.id:
            await abort_invalid_argument(context, "id", "must not be empty")
        product = store.get(request.id)
        if product is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"product {_shortened(request.id)} not found")
        return catalog_pb2.Product.FromString(product)  # temporary: until answers are sent as bytes

    async def ListProducts(
        self, request: catalog_pb2.ListProductsRequest, context: Context
    ) -> catalog_pb2.ListProductsResponse:
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
        return catalog_pb2.ListProductsResponse(
            # temporary: until answers are sent as bytes
            products=map(catalog_pb2.Product.FromString, store.page(request.category, offset, page_size)),
            next_page_token=next_token,
            total_count=total,
        )

    async def SearchProducts(
        self, request: catalog_pb2.SearchRequest, context: Context
    ) -> AsyncIterator[catalog_pb2.Product]:
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
                yield catalog_pb2.Product.FromString(product)  # temporary: until answers are sent as bytes


class LoadingServicer(catalog_pb2_grpc.ProductCatalogServicer):
    """catalog.ProductCatalog while the catalog loads: every call UNAVAILABLE, which clients retry."""

    async def GetProduct(self, request: Any, context: Context) -> NoReturn:
        """Refuse: no catalog yet."""
        await _still_loading(context)

    async def ListProducts(self, request: Any, context: Context) -> NoReturn:
        """Refuse: no catalog yet."""
        await _still_loading(context)

    async def SearchProducts(self, request: Any, context: Context) -> AsyncIterator[catalog_pb2.Product]:
        """Refuse: no catalog yet."""
        await _still_loading(context)
        yield catalog_pb2.Product()  # pragma: no cover  # makes this an async generator, as gRPC expects


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
