"""A minimal smoke check, standing in for the client's `client.smoke.run_smoke` until that lands.

Same shape (a channel and a per-call deadline in, one line per failed check out), so swapping it is one
import in release/cli.py. It checks what a release cannot go without: health SERVING for "" and the
catalog, a first page of products, and GetProduct of a listed id returning that product.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2

from catalog import HEALTH_NAMES, HEALTH_SERVICE_NAME, catalog_pb2, catalog_pb2_grpc


def _failed(error: grpc.RpcError) -> str:
    if isinstance(error, grpc.Call):
        return f"{error.code().name}: {error.details()}"
    return str(error)


def run_smoke(channel: grpc.Channel, timeout: float) -> list[str]:
    """Failed checks against the server behind `channel`, one line each; empty when all pass."""
    check = channel.unary_unary(
        f"/{HEALTH_SERVICE_NAME}/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    failures = []
    for name in HEALTH_NAMES:
        try:
            status = check(health_pb2.HealthCheckRequest(service=name), timeout=timeout).status
        except grpc.RpcError as error:
            failures.append(f"health {name!r}: {_failed(error)}")
            continue
        if status != health_pb2.HealthCheckResponse.SERVING:
            failures.append(f"health {name!r}: {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}")
    if failures:
        return failures
    stub = catalog_pb2_grpc.ProductCatalogStub(channel)
    try:
        page = stub.ListProducts(catalog_pb2.ListProductsRequest(page_size=5), timeout=timeout)
    except grpc.RpcError as error:
        return [f"ListProducts: {_failed(error)}"]
    if not page.products:
        return [f"ListProducts: an empty first page of {page.total_count} products"]
    listed = page.products[0]
    try:
        got = stub.GetProduct(catalog_pb2.GetProductRequest(id=listed.id), timeout=timeout)
    except grpc.RpcError as error:
        return [f"GetProduct {listed.id!r}: {_failed(error)}"]
    if got != listed:
        return [f"GetProduct {listed.id!r}: returned product {got.id!r}, not the one listed"]
    return []
