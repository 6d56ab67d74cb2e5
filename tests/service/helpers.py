"""Test helpers: synthetic catalogs and catalog files (servers: tests/servers.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from catalog import catalog_pb2_grpc
from catalog.catalog_pb2 import Product
from service.config import Settings
from service.servicer import Catalog
from tests.servers import in_process


def make_products(count: int, categories: Sequence[str] = ("tools", "toys", "books")) -> list[Product]:
    """`count` valid products, categories in rotation, ids "p0".."p{count-1}"."""
    return [
        Product(
            id=f"p{i}",
            name=f"Item {i}",
            description=f"Description of item {i}",
            price=float(i),
            category=categories[i % len(categories)],
            in_stock=i % 2 == 0,
        )
        for i in range(count)
    ]


@contextmanager
def serving(store: Catalog) -> Iterator[catalog_pb2_grpc.ProductCatalogStub]:
    """A catalog stub to an in-process server over `store` on a free port; both close on exit."""
    with (
        in_process(Settings(port=0), store) as server,
        grpc.insecure_channel(f"localhost:{server.port}") as channel,
    ):
        yield catalog_pb2_grpc.ProductCatalogStub(channel)


def write_catalog(path: Path, products: Sequence[Mapping[str, Any]]) -> Path:
    """Write a catalog file in the server's format and return its path."""
    path.write_text(json.dumps({"products": list(products)}), encoding="utf-8")
    return path


def assert_reason_comes_first(records: list[dict[str, Any]], failure: dict[str, Any]) -> None:
    """The CRITICAL line that says why the server stops comes before the shutdown's own lines."""
    messages = [r["message"] for r in records]
    shutting_down = [i for i, m in enumerate(messages) if m.startswith("shutting down")]
    assert shutting_down
    assert messages.index(failure["message"]) < shutting_down[0]
