"""Bare servers, one per server model: one fixed pre-serialized Product for every answer, nothing more.

GetProduct answers it; SearchProducts streams it max_results times (10 for 0, as the catalog does).

    PORT=8080 python -m bench.bare aio          # grpc.aio on uvloop, as service/server.py runs
    PORT=8080 python -m bench.bare sync         # grpc.server with a thread pool, as the seed runs
    PORT=8080 python -m bench.bare grpclib      # grpclib on uvloop: HTTP/2 in Python (h2), no gRPC core
    PORT=8080 python -m bench.bare aio-options  # aio, with our server's gRPC options

No guard, no log, no limits, no store: the ceiling of each model, which the bench compares our server's
CPU per call with (docs/performance.md). Health answers SERVING at once, so ServerProcess can time it.
`aio-options` is the one exception, never a ceiling: `aio` with the options service/server.py sets (its
connection limits make gRPC core do more on every call), so bench/instructions.py can tell core's work
for those options from our server's own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

import grpc
import uvloop
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from catalog import GET_PRODUCT_METHOD, HEALTH_CHECK_METHOD, SEARCH_PRODUCTS_METHOD, SERVICE_NAME, catalog_pb2
from service.thread_priority import lower_other_threads

MODELS = ("aio", "sync", "grpclib", "aio-options")
# The bare grpc.aio server's options: only a port of its own, as our server has (service/server.py).
BARE_OPTIONS: list[tuple[str, int | str]] = [("grpc.so_reuseport", 0)]
# The seed's thread count: the sync model as the seed runs it.
SYNC_THREADS = 10
ANSWER = catalog_pb2.Product(
    id="p050000",
    name="Wireless Kettle Pro 50000",
    description="A compact wireless kettle for the kitchen, tested and reliable",
    price=49.99,
    category="kitchen",
    in_stock=True,
).SerializeToString()
SERVING = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING).SerializeToString()


def _passthrough(data: bytes) -> bytes:
    return data


def _answers(request: catalog_pb2.SearchRequest) -> int:
    return request.max_results or 10


def _handler(get: Any, search: Any) -> grpc.GenericRpcHandler:
    methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        GET_PRODUCT_METHOD: grpc.unary_unary_rpc_method_handler(
            get, request_deserializer=_passthrough, response_serializer=_passthrough
        ),
        SEARCH_PRODUCTS_METHOD: grpc.unary_stream_rpc_method_handler(
            search,
            request_deserializer=catalog_pb2.SearchRequest.FromString,
            response_serializer=_passthrough,
        ),
    }
    return grpc.method_handlers_generic_handler(
        SERVICE_NAME, {method.rsplit("/", 1)[1]: handler for method, handler in methods.items()}
    )


async def aio_get(_request: bytes, _context: object) -> bytes:
    """The grpc.aio bare server's GetProduct: the fixed answer (bench/own_work.py times it too)."""
    return ANSWER


async def aio_search(request: catalog_pb2.SearchRequest, _context: object) -> AsyncIterator[bytes]:
    """The grpc.aio bare server's SearchProducts: the fixed answer, as many times as asked."""
    for _ in range(_answers(request)):
        yield ANSWER


async def _serve_aio(port: int, options: list[tuple[str, int | str]]) -> None:
    server = aio.server(handlers=[_handler(aio_get, aio_search)], options=options)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"[::]:{port}")
    await server.start()
    lower_other_threads()  # the model as service/server.py runs it: gRPC's threads behind the loop's
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0)


def _serve_sync(port: int) -> None:
    def get(_request: bytes, _context: object) -> bytes:
        return ANSWER

    def search(request: catalog_pb2.SearchRequest, _context: object) -> Iterator[bytes]:
        for _ in range(_answers(request)):
            yield ANSWER

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=SYNC_THREADS),
        handlers=[_handler(get, search)],
        options=BARE_OPTIONS,
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    server.add_insecure_port(f"[::]:{port}")
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()


def _serve_grpclib(port: int) -> None:
    # Imported here: only this model needs them.
    from grpclib.const import Cardinality, Handler  # noqa: PLC0415
    from grpclib.encoding.proto import ProtoCodec  # noqa: PLC0415
    from grpclib.server import Server, Stream  # noqa: PLC0415
    from grpclib.utils import graceful_exit  # noqa: PLC0415

    class PassThroughCodec(ProtoCodec):
        """Protobuf on the wire, the answer's bytes sent as they are (as the other models' serializers)."""

        def encode(self, message: Any, message_type: Any) -> bytes:
            return message if message_type is bytes else super().encode(message, message_type)

        def decode(self, data: bytes, message_type: Any) -> Any:
            return data if message_type is bytes else super().decode(data, message_type)

    class Catalog:
        async def get(self, stream: Stream[bytes, bytes]) -> None:
            await stream.recv_message()
            await stream.send_message(ANSWER)

        async def search(self, stream: Stream[catalog_pb2.SearchRequest, bytes]) -> None:
            request = await stream.recv_message()
            assert request is not None  # a unary request: grpclib has read it whole
            for _ in range(_answers(request)):
                await stream.send_message(ANSWER)

        async def health(self, stream: Stream[health_pb2.HealthCheckRequest, bytes]) -> None:
            # Not grpclib's own health service: its copy of health.proto clashes with grpc_health's.
            await stream.recv_message()
            await stream.send_message(SERVING)

        def __mapping__(self) -> dict[str, Handler]:
            return {
                HEALTH_CHECK_METHOD: Handler(
                    self.health, Cardinality.UNARY_UNARY, health_pb2.HealthCheckRequest, bytes
                ),
                GET_PRODUCT_METHOD: Handler(self.get, Cardinality.UNARY_UNARY, bytes, bytes),
                SEARCH_PRODUCTS_METHOD: Handler(
                    self.search, Cardinality.UNARY_STREAM, catalog_pb2.SearchRequest, bytes
                ),
            }

    async def serve() -> None:
        server = Server([Catalog()], codec=PassThroughCodec())
        with graceful_exit([server]):  # SIGTERM and SIGINT close it
            await server.start(None, port)  # every address, IPv4 and IPv6
            await server.wait_closed()

    uvloop.run(serve())


def main(argv: list[str]) -> int:
    """Serve model argv[0] on $PORT until SIGTERM."""
    if len(argv) != 1 or argv[0] not in MODELS:
        print(f"usage: python -m bench.bare {{{','.join(MODELS)}}}", file=sys.stderr)
        return 2
    port = int(os.environ.get("PORT", "8080"))
    if argv[0] == "aio":
        uvloop.run(_serve_aio(port, BARE_OPTIONS))
    elif argv[0] == "aio-options":
        # Imported here: the other models stay bare of the server's modules.
        from service.config import Settings  # noqa: PLC0415
        from service.server import grpc_options  # noqa: PLC0415

        uvloop.run(_serve_aio(port, grpc_options(Settings())))
    elif argv[0] == "grpclib":
        _serve_grpclib(port)
    else:
        _serve_sync(port)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
