"""Every preflight test gets a fresh fake cloud, clients of it, and a clean Pulumi config afterwards."""

from collections.abc import Iterator

import pytest

from preflight.checks import Clients
from tests.infra.harness import reset_pulumi
from tests.preflight.fake_cloud import FakeCloud, serve


@pytest.fixture(autouse=True)
def _clean_pulumi_runtime() -> Iterator[None]:
    reset_pulumi()
    yield
    reset_pulumi()


@pytest.fixture
def cloud() -> FakeCloud:
    return FakeCloud()


@pytest.fixture
def clients(cloud: FakeCloud) -> Iterator[Clients]:
    with serve(cloud) as connected:
        yield connected
