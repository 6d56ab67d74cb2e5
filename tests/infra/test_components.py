"""The components on their own: GrpcService reused with another server's settings, and its refusals."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from catalog_infra import grpc_service
from catalog_infra.apis import SERVICE_USAGE_API, ProjectApis

from tests.infra.harness import API, IMAGE, INVOKER, PROJECT, REPOSITORY, SERVICE, SLEEP, run_program

PREBUILT = "europe-west1-docker.pkg.dev/other-project-1/images/orders@sha256:" + "b" * 64


def orders_args(**overrides: Any) -> grpc_service.GrpcServiceArgs:
    args = grpc_service.GrpcServiceArgs(
        project="other-project-1",
        region="europe-west1",
        service_name="orders",
        image=PREBUILT,
        health_service="orders.Orders",
        settings=grpc_service.GrpcServiceSettings(
            min_instances=1,
            max_instances=2,
            concurrency=10,
            cpu="2",
            memory="1Gi",
            request_timeout_seconds=60,
            ingress="INGRESS_TRAFFIC_INTERNAL_ONLY",
            deletion_protection=True,
            allow_unauthenticated=False,
            invokers=("group:orders-clients@example.com",),
            invoker_iam_disabled=False,
            cpu_idle=True,
        ),
        env={"FEATURE": "on"},
    )
    # Each override goes where its field is: the component's settings (its config keys) or its other args.
    keys = {name for name in overrides if name in grpc_service.GrpcServiceSettings.__dataclass_fields__}
    settings = dataclasses.replace(args.settings, **{name: overrides[name] for name in keys})
    others = {name: value for name, value in overrides.items() if name not in keys}
    return dataclasses.replace(args, settings=settings, **others)


def test_grpc_service_serves_another_server() -> None:
    deployment = run_program({}, program=lambda: grpc_service.GrpcService("orders", orders_args()))
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
        "SERVER_PROCESSES": "2",
        "GOOGLE_CLOUD_PROJECT": "other-project-1",
    }
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}
    assert deployment.all(IMAGE) == []
    # The registry and the build are ContainerImage's, shared by every region.
    assert deployment.all(REPOSITORY) == []
    assert [b.inputs["member"] for b in deployment.all(INVOKER)] == ["group:orders-clients@example.com"]
    assert {r.name.split("-")[0] for r in deployment.declared} == {"orders"}


@pytest.mark.parametrize(("cpu", "processes"), [("1", "1"), ("2", "2"), ("0.5", "1"), ("4000m", "4")])
def test_the_server_runs_one_process_per_whole_cpu(cpu: str, processes: str) -> None:
    # Cloud Run may not show the container its CPU quota, so the program says how many (fractional: one).
    args = orders_args(cpu=cpu, concurrency=1 if cpu == "0.5" else 10)
    deployment = run_program({}, program=lambda: grpc_service.GrpcService("orders", args))
    container = deployment.one(SERVICE).inputs["template"]["containers"][0]
    assert {env["name"]: env["value"] for env in container["envs"]}["SERVER_PROCESSES"] == processes


@pytest.mark.parametrize("cpu_idle", [True, False])
def test_cpu_idle_picks_the_billing(cpu_idle: bool) -> None:
    # True: request-based billing (CPU only during calls); False: the CPU stays for the instance's life.
    args = orders_args(cpu_idle=cpu_idle)
    deployment = run_program({}, program=lambda: grpc_service.GrpcService("orders", args))
    resources = deployment.one(SERVICE).inputs["template"]["containers"][0]["resources"]
    assert resources["cpuIdle"] is cpu_idle


def test_the_stacks_cpu_idle_reaches_every_regions_service() -> None:
    config = {
        "gcp:project": "my-gcp-project-dev",
        "gcp:region": "us-central1",
        f"{PROJECT}:regions": ["us-central1", "europe-west1"],
        f"{PROJECT}:minInstances": 1,
        f"{PROJECT}:cpuIdle": False,
    }
    services = run_program(config).all(SERVICE)
    assert len(services) == 2
    assert {s.inputs["template"]["containers"][0]["resources"]["cpuIdle"] for s in services} == {False}


def test_grpc_service_refuses_to_set_port() -> None:
    args = orders_args(env={"PORT": "9090"})
    with pytest.raises(ValueError, match="PORT"):
        run_program({}, program=lambda: grpc_service.GrpcService("orders", args))


@pytest.mark.parametrize(
    "overrides", [{"allow_unauthenticated": True, "invokers": []}, {"invokers": ["user:a@example.com"]}]
)
def test_grpc_service_refuses_a_second_public_mode(overrides: dict[str, Any]) -> None:
    args = orders_args(invoker_iam_disabled=True, **overrides)
    with pytest.raises(ValueError, match="invoker_iam_disabled"):
        run_program({}, program=lambda: grpc_service.GrpcService("orders", args))


def test_apis_wait_once_after_every_api_is_enabled() -> None:
    deployment = run_program({}, program=lambda: ProjectApis("apis", "proj-1", ["run.googleapis.com"]))
    apis = {api.inputs["service"]: api.urn for api in deployment.all(API)}
    # Enabling goes through the Service Usage API: it is always in the list.
    assert set(apis) == {SERVICE_USAGE_API, "run.googleapis.com"}
    sleep = deployment.one(SLEEP)
    assert sleep.inputs["createDuration"] == "60s"
    assert set(apis.values()) <= set(sleep.dependencies)
    # The triggers change (and the Sleep waits again) only when the project or the list of APIs does.
    assert sleep.inputs["triggers"] == {
        "project": "proj-1",
        "apis": "run.googleapis.com,serviceusage.googleapis.com",
    }


@pytest.mark.parametrize(
    ("uri", "target"),
    [
        ("https://catalog-abc-uc.a.run.app", "catalog-abc-uc.a.run.app:443"),
        ("https://catalog-abc-uc.a.run.app/", "catalog-abc-uc.a.run.app:443"),
    ],
)
def test_target_is_the_host_on_port_443(uri: str, target: str) -> None:
    assert grpc_service.grpc_target(uri) == target
