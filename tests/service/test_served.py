"""ServedApi's default loading servicer: every method of the API, unary or streaming, answers UNAVAILABLE."""

from __future__ import annotations

import asyncio

import grpc
from grpc import aio

from catalog import catalog_pb2, catalog_pb2_grpc
from service.served import ServedApi

API = ServedApi[None](
    register=catalog_pb2_grpc.add_ProductCatalogServicer_to_server,
    servicer=lambda _data: object(),
    load=lambda _settings: None,
    data_name="greetings",
)


async def _outcomes() -> list[tuple[grpc.StatusCode, str]]:
    server = aio.server()
    API.register(API.loading_servicer(), server)
    port = server.add_insecure_port("localhost:0")
    await server.start()
    outcomes: list[tuple[grpc.StatusCode, str]] = []
    try:
        async with aio.insecure_channel(f"localhost:{port}") as channel:
            stub = catalog_pb2_grpc.ProductCatalogStub(channel)
            try:
                await stub.GetProduct(catalog_pb2.GetProductRequest(id="1"), timeout=10)
            except aio.AioRpcError as error:
                outcomes.append((error.code(), error.details() or ""))
            try:
                async for _ in stub.SearchProducts(catalog_pb2.SearchRequest(query="a"), timeout=10):
                    pass
            except aio.AioRpcError as error:
                outcomes.append((error.code(), error.details() or ""))
    finally:
        await server.stop(0)
    return outcomes


def test_the_default_loading_servicer_refuses_unary_and_streaming_calls_with_unavailable() -> None:
    message = "the service is still loading its greetings; retry shortly"
    assert asyncio.run(_outcomes()) == [(grpc.StatusCode.UNAVAILABLE, message)] * 2


def test_a_declared_loading_servicer_is_used_as_it_is() -> None:
    declared = object()
    with_one = ServedApi[None](register=API.register, servicer=API.servicer, load=API.load, loading=declared)
    assert with_one.loading_servicer() is declared
