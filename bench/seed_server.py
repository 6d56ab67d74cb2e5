"""The seed tutorial's server, kept verbatim for comparison: linear scans, `str(offset)` tokens, 10 threads.

Adapted only where the benchmark needs it: the generated modules come from the `catalog` package, and the
products come from the JSON file named by CATALOG_PATH (the service's format) instead of the hard-coded dict,
which stays the default; PORT as in the seed. Formatted by ruff, otherwise as published. Do not improve it:
it is the baseline the benchmark measures.
"""
# The seed's code is untyped and unannotated: kept so, rather than rewritten for the linters.
# mypy: ignore-errors
# ruff: noqa: N802, ANN001, ANN201

import json
import os
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from catalog import catalog_pb2, catalog_pb2_grpc

# Sample product data (in production, this would come from a database)
PRODUCTS = {
    "1": {
        "id": "1",
        "name": "Laptop Pro 16",
        "description": "High-performance laptop",
        "price": 1299.99,
        "category": "electronics",
        "in_stock": True,
    },
    "2": {
        "id": "2",
        "name": "Wireless Mouse",
        "description": "Ergonomic wireless mouse",
        "price": 49.99,
        "category": "electronics",
        "in_stock": True,
    },
    "3": {
        "id": "3",
        "name": "Standing Desk",
        "description": "Adjustable standing desk",
        "price": 599.99,
        "category": "furniture",
        "in_stock": False,
    },
    "4": {
        "id": "4",
        "name": "Monitor 27 4K",
        "description": "27-inch 4K display",
        "price": 449.99,
        "category": "electronics",
        "in_stock": True,
    },
    "5": {
        "id": "5",
        "name": "Desk Lamp",
        "description": "LED desk lamp with dimmer",
        "price": 39.99,
        "category": "furniture",
        "in_stock": True,
    },
}

# The catalog file uses the protobuf JSON names; the seed's dicts use the field names.
_JSON_NAMES = {"inStock": "in_stock"}


def load_products(path):
    """The products of a catalog file, as the seed's id -> dict mapping in file order."""
    with open(path, encoding="utf-8") as file:
        document = json.load(file)
    products = {}
    for item in document["products"]:
        fields = {_JSON_NAMES.get(key, key): value for key, value in item.items()}
        products[fields["id"]] = fields
    return products


class ProductCatalogServicer(catalog_pb2_grpc.ProductCatalogServicer):
    """Implementation of the ProductCatalog gRPC service."""

    def GetProduct(self, request, context):
        """Return a single product by ID."""
        product_data = PRODUCTS.get(request.id)
        if not product_data:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Product {request.id} not found")
        return catalog_pb2.Product(**product_data)

    def ListProducts(self, request, context):
        """Return a paginated list of products, optionally filtered by category."""
        products = list(PRODUCTS.values())

        # Filter by category if specified
        if request.category:
            products = [p for p in products if p["category"] == request.category]

        # Simple pagination
        page_size = request.page_size or 10
        start = 0
        if request.page_token:
            start = int(request.page_token)

        page = products[start : start + page_size]
        next_token = str(start + page_size) if start + page_size < len(products) else ""

        return catalog_pb2.ListProductsResponse(
            products=[catalog_pb2.Product(**p) for p in page],
            next_page_token=next_token,
            total_count=len(products),
        )

    def SearchProducts(self, request, context):
        """Stream products matching the search query."""
        query = request.query.lower()
        count = 0
        max_results = request.max_results or 10

        for product_data in PRODUCTS.values():
            if count >= max_results:
                break
            if query in product_data["name"].lower() or query in product_data["description"].lower():
                yield catalog_pb2.Product(**product_data)
                count += 1


def serve():
    """Start the gRPC server with health checking."""
    port = os.environ.get("PORT", "8080")

    # Create the gRPC server with a thread pool
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=10))

    # Register the product catalog service
    catalog_pb2_grpc.add_ProductCatalogServicer_to_server(ProductCatalogServicer(), server)

    # Register the health checking service (required for Cloud Run)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)

    # Set the service as healthy
    health_servicer.set("catalog.ProductCatalog", health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)

    # Listen on all interfaces (required for Cloud Run)
    server.add_insecure_port(f"[::]:{port}")
    server.start()
    print(f"gRPC server started on port {port}")
    server.wait_for_termination()


if __name__ == "__main__":
    if os.environ.get("CATALOG_PATH"):
        PRODUCTS = load_products(os.environ["CATALOG_PATH"])
    serve()
