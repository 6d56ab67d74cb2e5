"""The program's read of the live service, against the fake Cloud Run Admin API (tests/release)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pulumi
import pytest

from release.cloudrun import connect
from release.traffic import Route
from tests.infra.harness import infra_module
from tests.release.conftest import template
from tests.release.fake_run import FakeCloudRun, serve

PATH = "projects/my-gcp-project-prod/locations/us-central1/services/catalog-grpc"
REV = "catalog-grpc-00001-abc"


@pytest.fixture
def fake() -> FakeCloudRun:
    return FakeCloudRun()


@pytest.fixture
def client(fake: FakeCloudRun) -> Iterator[Any]:
    with serve(fake) as address:
        yield connect(address, insecure=True)


def read(client: Any) -> Any:
    return infra_module("live").read_service("my-gcp-project-prod", "us-central1", "catalog-grpc", client)


def test_no_service_yet_is_a_first_deploy(client: Any) -> None:
    assert read(client) is None


def test_a_disabled_cloud_run_api_is_a_first_deploy_too(client: Any, fake: FakeCloudRun) -> None:
    fake.refuse_reads = (grpc.StatusCode.PERMISSION_DENIED, "SERVICE_DISABLED")
    assert read(client) is None


def test_any_other_refusal_stops_the_program(client: Any, fake: FakeCloudRun) -> None:
    fake.refuse_reads = (grpc.StatusCode.PERMISSION_DENIED, "IAM_PERMISSION_DENIED")
    with pytest.raises(pulumi.RunError, match=r"cannot read the live traffic of .*run\.services\.get"):
        read(client)


def test_the_split_is_read_as_cloud_run_serves_it(client: Any, fake: FakeCloudRun) -> None:
    fake.deploy(PATH, template(REV), [Route(REV, 100, "stable"), Route(REV, 0, "candidate")])
    service = read(client)
    revisions = infra_module("revisions")
    assert service.routes == (
        revisions.LiveRoute(REV, 100, "stable"),
        revisions.LiveRoute(REV, 0, "candidate"),
    )
    assert service.latest_ready_revision == REV
