"""The components on their own: GrpcService reused with another server's settings, and its refusals."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.infra.harness import IMAGE, INVOKER, REPOSITORY, SERVICE, reset_pulumi, run_program

PREBUILT = "europe-west1-docker.pkg.dev/other-project-1/images/orders@sha256:" + "b" * 64


@pytest.fixture
def grpc_service() -> Any:
    """The module infra/__main__.py builds its service from, as loaded by a run of the program."""
    module = run_program({"gcp:project": "my-gcp-project-dev"}).namespace["grpc_service"]
    reset_pulumi()
    return module


def orders_args(grpc_service: Any, **overrides: Any) -> Any:
    args = grpc_service.GrpcServiceArgs(
        project="other-project-1",
        region="europe-west1",
        service_name="orders",
        image=PREBUILT,
        health_service="orders.Orders",
        min_instances=1,
        max_instances=2,
        concurrency=10,
        cpu="2",
        memory="1Gi",
        request_timeout_seconds=60,
        ingress="INGRESS_TRAFFIC_INTERNAL_ONLY",
        deletion_protection=True,
        allow_unauthenticated=False,
        invokers=["group:orders-clients@example.com"],
        env={"FEATURE": "on"},
    )
    return dataclasses.replace(args, **overrides)


def test_grpc_service_serves_another_server(grpc_service: Any) -> None:
    deployment = run_program(
        {}, program=lambda: grpc_service.GrpcService("orders", orders_args(grpc_service))
    )
    service = deployment.one(SERVICE).inputs
    container = service["template"]["containers"][0]
    assert service["name"] == "orders"
    assert service["project"] == "other-project-1"
    assert service["location"] == "europe-west1"
    assert service["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert container["image"] == PREBUILT
    assert container["startupProbe"]["grpc"]["service"] == "orders.Orders"
    assert {env["name"]: env["value"] for env in container["envs"]} == {
        "FEATURE": "on",
        "MAX_CONCURRENT_RPCS": "10",
        "GOOGLE_CLOUD_PROJECT": "other-project-1",
    }
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}
    assert deployment.all(IMAGE) == []
    assert deployment.one(REPOSITORY).inputs["repositoryId"] == "orders"
    assert [b.inputs["member"] for b in deployment.all(INVOKER)] == ["group:orders-clients@example.com"]
    assert {r.name.split("-")[0] for r in deployment.declared} == {"orders"}


def test_grpc_service_refuses_to_set_port(grpc_service: Any) -> None:
    args = orders_args(grpc_service, env={"PORT": "9090"})
    with pytest.raises(ValueError, match="PORT"):
        run_program({}, program=lambda: grpc_service.GrpcService("orders", args))


@pytest.mark.parametrize(
    ("uri", "target"),
    [
        ("https://catalog-abc-uc.a.run.app", "catalog-abc-uc.a.run.app:443"),
        ("https://catalog-abc-uc.a.run.app/", "catalog-abc-uc.a.run.app:443"),
    ],
)
def test_target_is_the_host_on_port_443(grpc_service: Any, uri: str, target: str) -> None:
    assert grpc_service.grpc_target(uri) == target
