"""Fixtures: a real catalog server on a free port, in-process, and channels to it."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from catalog import catalog_pb2_grpc
from service.config import Settings
from service.server import RunningServer, run_server
from service.store import load_catalog


@pytest.fixture
def running() -> Iterator[RunningServer]:
    """The server with the embedded seed catalog and reflection on."""
    with run_server(Settings(port=0, enable_reflection=True), load_catalog()) as server:
        yield server


@pytest.fixture
def channel(running: RunningServer) -> Iterator[grpc.Channel]:
    """A cleartext channel to `running`."""
    with grpc.insecure_channel(f"localhost:{running.port}") as channel:
        yield channel


@pytest.fixture
def stub(channel: grpc.Channel) -> catalog_pb2_grpc.ProductCatalogStub:
    """A catalog stub on `channel`."""
    return catalog_pb2_grpc.ProductCatalogStub(channel)
