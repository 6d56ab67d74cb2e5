"""What GrpcService declares, setting by setting: probes, account, invoker bindings, outputs, its refusals.

The component on its own (another server's settings, tests/infra/test_components.py's `orders_args`), so
that each value is checked against what the component was given rather than against a committed stack.
"""

from __future__ import annotations

import re
from typing import Any

import pulumi
import pulumi_gcp as gcp
import pytest
from catalog_infra import grpc_service
from catalog_infra.revisions import LiveRoute, LiveService

from contract.release import DECISION_ANNOTATIONS
from tests.infra.harness import ACCOUNT, INVOKER, SERVICE, Deployment, run_program
from tests.infra.test_components import PREBUILT, orders_args

COMPONENT = "catalog:index:GrpcService"
BUCKET_IAM = "gcp:storage/bucketIAMMember:BucketIAMMember"
HOST = "orders-abc123-uc.a.run.app"
RUNTIME_EMAIL = "orders-run@other-project-1.iam.gserviceaccount.com"


def deploy(args: grpc_service.GrpcServiceArgs) -> Deployment:
    return run_program({}, program=lambda: grpc_service.GrpcService("orders", args))


def container(deployment: Deployment) -> dict[str, Any]:
    (only,) = deployment.one(SERVICE).inputs["template"]["containers"]
    result: dict[str, Any] = only
    return result


def test_probes_ask_the_health_names_over_grpc_on_the_h2c_port() -> None:
    declared = container(deploy(orders_args()))
    # Cloud Run speaks cleartext HTTP/2 to a port named h2c: gRPC end to end, and the probes use that port.
    assert declared["ports"] == {"name": "h2c", "containerPort": 8080}
    assert declared["startupProbe"] == {
        "grpc": {"port": 8080, "service": "orders.Orders"},
        # Probing starts at once: the server is SERVING within 1-2 s, and every probe costs only 2 s.
        "initialDelaySeconds": 0,
        "periodSeconds": grpc_service.STARTUP_PERIOD_SECONDS,
        "timeoutSeconds": grpc_service.STARTUP_TIMEOUT_SECONDS,
        "failureThreshold": grpc_service.STARTUP_FAILURE_THRESHOLD,
    }
    # Liveness asks for the server as a whole (""), not the catalog: a draining server is alive.
    assert declared["livenessProbe"] == {
        "grpc": {"port": 8080, "service": ""},
        "periodSeconds": grpc_service.LIVENESS_PERIOD_SECONDS,
        "timeoutSeconds": grpc_service.LIVENESS_TIMEOUT_SECONDS,
        "failureThreshold": grpc_service.LIVENESS_FAILURE_THRESHOLD,
    }
    assert declared["readinessProbe"] == {
        "grpc": {"port": 8080, "service": "orders.Orders"},
        "successThreshold": grpc_service.READINESS_SUCCESS_THRESHOLD,
        "periodSeconds": grpc_service.READINESS_PERIOD_SECONDS,
        "timeoutSeconds": grpc_service.READINESS_TIMEOUT_SECONDS,
        "failureThreshold": grpc_service.READINESS_FAILURE_THRESHOLD,
    }


@pytest.mark.parametrize(
    "probe",
    [
        (grpc_service.STARTUP_PERIOD_SECONDS, grpc_service.STARTUP_TIMEOUT_SECONDS),
        (grpc_service.LIVENESS_PERIOD_SECONDS, grpc_service.LIVENESS_TIMEOUT_SECONDS),
        (grpc_service.READINESS_PERIOD_SECONDS, grpc_service.READINESS_TIMEOUT_SECONDS),
    ],
    ids=["startup", "liveness", "readiness"],
)
def test_each_probe_answers_within_its_period(probe: tuple[int, int]) -> None:
    # Both readings of the API reference: timeout smaller than the period, period at least the timeout.
    period, timeout = probe
    assert 1 <= timeout < period


def test_the_environment_is_sent_sorted_by_name() -> None:
    # The same settings send the same template (and name the same revision) whatever order they were added.
    names = [env["name"] for env in container(deploy(orders_args(env={"ZETA": "1", "ALPHA": "2"})))["envs"]]
    assert names == sorted(names)
    assert set(names) == {"ALPHA", "ZETA", "MAX_CONCURRENT_RPCS", "SERVER_PROCESSES", "GOOGLE_CLOUD_PROJECT"}


def test_the_runtime_account_is_the_services_own_and_named_after_it() -> None:
    deployment = deploy(orders_args())
    account = deployment.one(ACCOUNT)
    assert account.name == "orders-sa"
    assert account.parent.endswith(f"{COMPONENT}::orders")
    assert {key: account.inputs[key] for key in ("project", "accountId", "displayName", "description")} == {
        "project": "other-project-1",
        "accountId": "orders-run",
        "displayName": "orders (Cloud Run runtime)",
        "description": "Identity the service runs as; it needs no project roles (logs go to stdout).",
    }
    assert deployment.one(SERVICE).inputs["template"]["serviceAccount"] == RUNTIME_EMAIL


CATALOG = grpc_service.CatalogMount(bucket="orders-catalogs", object_name="catalogs/c.json", sha256="ab" * 32)


def test_a_catalog_is_mounted_read_only_and_its_bucket_granted_to_the_runtime_account() -> None:
    deployment = deploy(orders_args(catalog=CATALOG))
    service = deployment.one(SERVICE)
    template = service.inputs["template"]
    assert template["executionEnvironment"] == "EXECUTION_ENVIRONMENT_GEN2"
    assert template["volumes"] == [
        {"name": "catalog", "gcs": {"bucket": "orders-catalogs", "readOnly": True}}
    ]
    assert container(deployment)["volumeMounts"] == [{"name": "catalog", "mountPath": "/mnt/catalog"}]
    env = {env["name"]: env["value"] for env in container(deployment)["envs"]}
    assert {name: value for name, value in env.items() if name.startswith("CATALOG_")} == {
        "CATALOG_PATH": "/mnt/catalog/catalogs/c.json",
        "CATALOG_SHA256": "ab" * 32,
        "CATALOG_READ_TIMEOUT_SECONDS": str(grpc_service.CATALOG_READ_TIMEOUT_SECONDS),
    }
    (grant,) = deployment.all(BUCKET_IAM)
    assert grant.name == "orders-catalog-reader"
    assert grant.parent.endswith(f"{COMPONENT}::orders")
    assert grant.inputs == {
        "bucket": "orders-catalogs",
        "role": "roles/storage.objectViewer",
        "member": f"serviceAccount:{RUNTIME_EMAIL}",
    }
    # The first instance mounts the bucket as the account: the grant exists before the service.
    assert grant.urn in service.dependencies


def test_a_shared_account_runs_the_service_and_brings_its_own_grant() -> None:
    def program() -> None:
        shared = gcp.serviceaccount.Account("shared", project="other-project-1", account_id="shared-run")
        grpc_service.GrpcService("orders", orders_args(catalog=CATALOG, service_account=shared))

    deployment = run_program({}, program=program)
    assert [account.name for account in deployment.all(ACCOUNT)] == ["shared"]
    assert deployment.all(BUCKET_IAM) == []
    template = deployment.one(SERVICE).inputs["template"]
    assert template["serviceAccount"] == "shared-run@other-project-1.iam.gserviceaccount.com"


def test_without_a_catalog_nothing_is_mounted_and_the_first_generation_runs() -> None:
    deployment = deploy(orders_args())
    template = deployment.one(SERVICE).inputs["template"]
    assert "executionEnvironment" not in template
    assert "volumes" not in template
    assert "volumeMounts" not in container(deployment)
    assert deployment.all(BUCKET_IAM) == []


# Each kind of member an invoker may be, and the name its binding gets: the member's letters and digits, any
# run of other characters one dash, none at either end (a binding renamed is a binding replaced).
INVOKER_NAMES = {
    "group:orders-clients@example.com": "group-orders-clients-example-com",
    "user:Jane.Doe@Example.com": "user-Jane-Doe-Example-com",
    "serviceAccount:caller@other-project-1.iam.gserviceaccount.com": (
        "serviceAccount-caller-other-project-1-iam-gserviceaccount-com"
    ),
    "domain:example.com": "domain-example-com",
    "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/MAX": (
        "principal-iam-googleapis-com-projects-1-locations-global-workloadIdentityPools-p-subject-MAX"
    ),
    "principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/*": (
        "principalSet-iam-googleapis-com-projects-1-locations-global-workloadIdentityPools-p"
    ),
}


@pytest.mark.parametrize(("member", "slug"), INVOKER_NAMES.items(), ids=list(INVOKER_NAMES))
def test_each_invoker_gets_one_binding_named_after_it(member: str, slug: str) -> None:
    deployment = deploy(orders_args(invokers=(member,)))
    (binding,) = deployment.all(INVOKER)
    assert binding.name == f"orders-invoker-{slug}"
    assert binding.parent.endswith(f"{COMPONENT}::orders")
    assert binding.inputs == {
        "project": "other-project-1",
        "location": "europe-west1",
        "name": "orders",
        "role": "roles/run.invoker",
        "member": member,
    }


def test_invokers_that_differ_only_in_punctuation_get_bindings_of_their_own() -> None:
    # Both would be user-a-b-example-com, and Pulumi refuses two resources of one name: the second gets
    # its member's hash too (sha256, 8 hex digits), and the first keeps the plain name.
    deployment = deploy(orders_args(invokers=("user:a.b@example.com", "user:a-b@example.com")))
    bindings = {binding.name: binding.inputs["member"] for binding in deployment.all(INVOKER)}
    assert bindings == {
        "orders-invoker-user-a-b-example-com": "user:a.b@example.com",
        "orders-invoker-user-a-b-example-com-dfd00282": "user:a-b@example.com",
    }


@pytest.mark.parametrize("allow_unauthenticated", [True, False])
def test_allow_unauthenticated_adds_all_users_beside_the_invokers(allow_unauthenticated: bool) -> None:
    deployment = deploy(orders_args(allow_unauthenticated=allow_unauthenticated))
    bindings = {binding.name: binding.inputs["member"] for binding in deployment.all(INVOKER)}
    expected = {"orders-invoker-group-orders-clients-example-com": "group:orders-clients@example.com"}
    if allow_unauthenticated:
        expected["orders-invoker-allUsers"] = "allUsers"
    assert bindings == expected


def test_the_component_registers_and_exposes_its_outputs() -> None:
    args = orders_args()
    attributes = (
        "url",
        "target",
        "revision",
        "stable_target",
        "candidate_target",
        "candidate_url",
        "image",
        "service_name",
        "service_account_email",
        "service_account_name",
    )

    def program() -> None:
        parent = pulumi.ComponentResource("test:index:Parent", "parent")
        service = grpc_service.GrpcService("orders", args, pulumi.ResourceOptions(parent=parent))
        # What another region's service is declared from (infra/__main__.py): the same args and account.
        assert service.args is args
        assert isinstance(service.account, gcp.serviceaccount.Account)
        pulumi.export("accountUrn", service.account.urn)
        pulumi.export("region", service.region)
        for attribute in attributes:
            pulumi.export(attribute, getattr(service, attribute))

    deployment = run_program({}, program=program)
    (component,) = [resource for resource in deployment.declared if resource.type == COMPONENT]
    # The options it was given apply to it: here its parent.
    assert component.urn.endswith(f"test:index:Parent${COMPONENT}::orders")
    assert component.parent.endswith("test:index:Parent::parent")
    revision = deployment.one(SERVICE).inputs["template"]["revision"]
    # Cloud Run takes a revision name only if it starts with the service's name and a dash.
    assert re.fullmatch(r"orders-[0-9a-f]{10}", revision), revision
    assert deployment.component_outputs[component.urn] == {
        "url": f"https://{HOST}",
        "target": f"{HOST}:443",
        "revision": revision,
        "stableTarget": f"stable---{HOST}:443",
        "candidateTarget": f"candidate---{HOST}:443",
        "image": PREBUILT,
        "serviceName": "orders",
        "serviceAccount": RUNTIME_EMAIL,
        "region": "europe-west1",
    }
    assert deployment.outputs == {
        "accountUrn": deployment.one(ACCOUNT).urn,
        "region": "europe-west1",
        "url": f"https://{HOST}",
        "target": f"{HOST}:443",
        "revision": revision,
        "stable_target": f"stable---{HOST}:443",
        "candidate_target": f"candidate---{HOST}:443",
        "candidate_url": f"https://candidate---{HOST}",
        "image": PREBUILT,
        "service_name": "orders",
        "service_account_email": RUNTIME_EMAIL,
        "service_account_name": f"projects/other-project-1/serviceAccounts/{RUNTIME_EMAIL}",
    }


BY_REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"


def test_a_first_deploy_serves_the_new_revision_as_stable_and_tags_it_candidate() -> None:
    service = deploy(orders_args()).one(SERVICE).inputs
    revision = service["template"]["revision"]
    assert service["traffics"] == [
        {"type": BY_REVISION, "revision": revision, "percent": 100, "tag": "stable"},
        {"type": BY_REVISION, "revision": revision, "percent": 0, "tag": "candidate"},
    ]


def test_the_live_split_is_declared_as_it_is_with_the_candidate_added() -> None:
    # Routes Cloud Run serves now, tagged or not, each kept with its share; the new revision gets no traffic.
    live = LiveService(
        routes=(LiveRoute("orders-old", 90, "stable"), LiveRoute("orders-older", 10)),
        latest_ready_revision="orders-old",
    )
    service = deploy(orders_args(live=live)).one(SERVICE).inputs
    assert service["traffics"] == [
        {"type": BY_REVISION, "revision": "orders-old", "percent": 90, "tag": "stable"},
        {"type": BY_REVISION, "revision": "orders-older", "percent": 10},
        {"type": BY_REVISION, "revision": service["template"]["revision"], "percent": 0, "tag": "candidate"},
    ]


@pytest.mark.parametrize(
    "annotations",
    [(), tuple((key, f"recorded {key}") for key in DECISION_ANNOTATIONS)],
    ids=["none-live", "the-releases-decisions"],
)
def test_the_releases_annotations_are_declared_as_live(annotations: tuple[tuple[str, str], ...]) -> None:
    # The provider's update sends the whole annotation map it knows: declared as found, they are kept;
    # none live, none declared (not an empty map the state would then carry).
    live = LiveService(
        routes=(LiveRoute("orders-0123456789", 100, "stable"),),
        latest_ready_revision="orders-0123456789",
        annotations=annotations,
    )
    service = deploy(orders_args(live=live)).one(SERVICE).inputs
    if annotations:
        assert service["annotations"] == dict(annotations)
    else:
        assert "annotations" not in service


@pytest.mark.parametrize("uri", [f"https://{HOST}", f"https://{HOST}/"])
def test_a_tags_url_is_the_service_host_behind_the_tag(uri: str) -> None:
    assert grpc_service.tag_url(uri, "candidate") == f"https://candidate---{HOST}"


def test_a_cpu_that_is_not_a_count_is_refused_with_its_value() -> None:
    with pytest.raises(ValueError, match=re.escape("cpu 'lots' is not a CPU count such as 1, 2 or 1000m")):
        grpc_service.server_processes("lots")


def test_port_is_refused_with_the_reason() -> None:
    args = orders_args(env={"PORT": "9090"})
    message = "PORT is reserved: Cloud Run sets it, so the service must not"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        deploy(args)


def test_a_second_public_mode_is_refused_with_the_reason() -> None:
    args = orders_args(invoker_iam_disabled=True, allow_unauthenticated=True, invokers=())
    message = (
        "invoker_iam_disabled already makes the service public: "
        "do not also set allow_unauthenticated or invokers"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        deploy(args)
