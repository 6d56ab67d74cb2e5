"""Fixtures: a real catalog server on a free port, in-process, and channels to it."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from catalog import catalog_pb2_grpc
from service.catalog_file import load_catalog
from service.config import Settings
from tests.servers import InProcessServer, in_process


@pytest.fixture
def running() -> Iterator[InProcessServer]:
    """The server with the embedded seed catalog and reflection on."""
    with in_process(Settings(port=0, enable_reflection=True), load_catalog()) as server:
        yield server


@pytest.fixture
def channel(running: InProcessServer) -> Iterator[grpc.Channel]:
    """A cleartext channel to `running`."""
    with grpc.insecure_channel(f"localhost:{running.port}") as channel:
        yield channel


@pytest.fixture
def stub(channel: grpc.Channel) -> catalog_pb2_grpc.ProductCatalogStub:
    """A catalog stub on `channel`."""
    return catalog_pb2_grpc.ProductCatalogStub(channel)
