"""Serve an in-process fake of a Google API on a free loopback port, the one way every fake here is served."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc


@contextmanager
def serve_fake(
    service: str, handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]], *, workers: int
) -> Iterator[str]:
    """Serve `handlers` as the methods of `service` (its full name) on 127.0.0.1; yields host:port."""
    generic = grpc.method_handlers_generic_handler(service, dict(handlers))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), handlers=[generic])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0)
