"""Fixtures: the attack suite's catalog, the real server on it, and the well-behaved client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.catalog import generate_products, write_catalog
from catalog.catalog_pb2 import Product
from tests.attack.harness import CATALOG_PRODUCTS, Probe, TargetServer


@pytest.fixture(scope="session")
def products() -> list[Product]:
    """The generated catalog, as the server holds it."""
    return generate_products(CATALOG_PRODUCTS)


@pytest.fixture(scope="session")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated catalog as a CATALOG_PATH file."""
    return write_catalog(tmp_path_factory.mktemp("attack") / "catalog.json", CATALOG_PRODUCTS)


@pytest.fixture
def server(catalog: Path) -> Iterator[TargetServer]:
    """A fresh `python -m service` for each attack, so one cannot hide another's damage."""
    target = TargetServer(catalog)
    try:
        yield target
    finally:
        target.stop()


@pytest.fixture
def probe(server: TargetServer, products: list[Product]) -> Iterator[Probe]:
    """The well-behaved client, its idle baseline measured."""
    client = Probe(server.port, products)
    try:
        yield client
    finally:
        client.close()
