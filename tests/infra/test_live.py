"""The program's read of the live service, against the fake Cloud Run Admin API (tests/release)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from typing import Any

import grpc
import pulumi
import pytest

from release.cloudrun import connect
from release.traffic import Route
from tests.infra.harness import (
    INFRA_DIR,
    PROJECT,
    Mocks,
    infra_module,
    stack_config,
    wire_value,
    with_project_config,
)
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


def stack(*regions: str) -> Any:
    """The prod stack's validated config, serving from `regions` (the first is gcp:region)."""
    config = {**stack_config("prod"), "gcp:region": regions[0], f"{PROJECT}:regions": list(regions)}
    pulumi.runtime.set_all_config(
        {key: wire_value(value) for key, value in with_project_config(config).items()}
    )
    pulumi.runtime.set_mocks(Mocks(), project=PROJECT, stack="prod")
    return infra_module("config").load()


def test_every_region_is_read_once_and_a_missing_one_is_a_first_deploy(
    client: Any, fake: FakeCloudRun
) -> None:
    fake.deploy(PATH, template(REV), [Route(REV, 100, "stable"), Route(REV, 0, "candidate")])
    services = infra_module("live").read_live_services(stack("us-central1", "europe-west1"), client)
    assert list(services) == ["us-central1", "europe-west1"]
    assert services["us-central1"].latest_ready_revision == REV
    assert services["europe-west1"] is None


def test_a_split_the_program_cannot_build_on_stops_it_naming_the_service(
    client: Any, fake: FakeCloudRun
) -> None:
    other = "catalog-grpc-00002-def"
    fake.deploy(PATH, template(other), [Route(other, 100, "")])
    fake.deploy(PATH, template(REV), [Route(REV, 50, ""), Route(other, 50, "")])
    with pytest.raises(infra_module("revisions").LiveTrafficError, match=rf"^{PATH}: .*no revision tagged"):
        infra_module("live").read_live_services(stack("us-central1"), client)


def test_the_entry_point_reads_the_live_services_in_one_call() -> None:
    # config -> components -> exports: no loop of its own over regions or their checks.
    program = ast.parse((INFRA_DIR / "__main__.py").read_text(encoding="utf-8"))
    calls = [
        node.func.attr
        for node in ast.walk(program)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    ]
    assert calls.count("read_live_services") == 1
    assert "read_service" not in calls
    assert "serving_routes" not in calls
    assert not [node for node in program.body if isinstance(node, ast.For | ast.While)]
