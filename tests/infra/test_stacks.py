"""Each committed stack file, run through the program under mocks: every resource property and output."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from catalog_infra.config import KEYS

from tests.infra.harness import (
    ACCOUNT,
    ACCOUNT_IAM,
    API,
    DIGEST,
    IMAGE,
    INFRA_DIR,
    INVOKER,
    POOL,
    POOL_NUMBER,
    PROJECT,
    REPO_ROOT,
    REPOSITORY,
    SECRET_MARKER,
    SECRET_SIG,
    SERVICE,
    SLEEP,
    STACKS,
    Deployment,
    project_defaults,
    recorded,
    stack_config,
    wire_value,
)


def setting(stack: str, key: str) -> Any:
    """The stack's value of a key, or Pulumi.yaml's default for it: what `pulumi up` hands the program."""
    return {**project_defaults(), **stack_config(stack)}[f"{PROJECT}:{key}"]


def container(deployment: Deployment) -> dict[str, Any]:
    containers = deployment.one(SERVICE).inputs["template"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def env_of(deployment: Deployment) -> dict[str, str]:
    envs = container(deployment)["envs"]
    names = [env["name"] for env in envs]
    assert len(names) == len(set(names))
    return {env["name"]: env["value"] for env in envs}


def test_service_speaks_http2_end_to_end(deployment: Deployment) -> None:
    assert container(deployment)["ports"] == {"name": "h2c", "containerPort": 8080}


def test_startup_probe_waits_for_the_catalog_over_grpc(deployment: Deployment) -> None:
    probe = container(deployment)["startupProbe"]
    assert probe["grpc"] == {"port": 8080, "service": "catalog.ProductCatalog"}
    assert "httpGet" not in probe
    assert "tcpSocket" not in probe
    # Fits a ~1-2 s start: checked every 2 s, given up on after 30 s at most, far inside Cloud Run's 240 s;
    # the timeout is smaller than the period: both readings of the API reference (tests/infra/admission.py).
    assert probe["periodSeconds"] == 2
    assert probe["timeoutSeconds"] < probe["periodSeconds"]
    assert 5 <= probe["periodSeconds"] * probe["failureThreshold"] <= 30


def test_liveness_probe_asks_the_whole_server_over_grpc(deployment: Deployment) -> None:
    probe = container(deployment)["livenessProbe"]
    assert probe["grpc"] == {"port": 8080, "service": ""}
    assert probe["timeoutSeconds"] <= probe["periodSeconds"]
    assert probe["failureThreshold"] >= 2


def test_scaling_concurrency_and_timeout_follow_the_stack(stack: str, deployment: Deployment) -> None:
    template = deployment.one(SERVICE).inputs["template"]
    assert template["scaling"] == {
        "minInstanceCount": setting(stack, "minInstances"),
        "maxInstanceCount": setting(stack, "maxInstances"),
    }
    assert template["maxInstanceRequestConcurrency"] == setting(stack, "concurrency")
    assert template["timeout"] == f"{setting(stack, 'requestTimeoutSeconds')}s"


def test_resources_are_explicit(stack: str, deployment: Deployment) -> None:
    assert container(deployment)["resources"] == {
        "limits": {"cpu": setting(stack, "cpu"), "memory": setting(stack, "memory")},
        "cpuIdle": setting(stack, "cpuIdle"),
        "startupCpuBoost": True,
    }


def test_environment_is_the_servers_and_never_port(stack: str, deployment: Deployment) -> None:
    catalog_file = setting(stack, "catalogFile")
    sha256 = hashlib.sha256((REPO_ROOT / catalog_file).read_bytes()).hexdigest() if catalog_file else ""
    assert env_of(deployment) == {
        # The keys that carry a server setting (config.py's `env`: ENABLE_REFLECTION, LOG_LEVEL, ...).
        **{key.env: wire_value(setting(stack, key.name)) for key in KEYS if key.env},
        "MAX_CONCURRENT_RPCS": str(setting(stack, "concurrency")),
        "SERVER_PROCESSES": str(max(1, int(float(setting(stack, "cpu"))))),
        "GOOGLE_CLOUD_PROJECT": stack_config(stack)["gcp:project"],
        # With a catalog file (dev): the mounted object, its digest, and how long to wait for the mount.
        **(
            {
                "CATALOG_PATH": f"/mnt/catalog/catalogs/{sha256}.json",
                "CATALOG_SHA256": sha256,
                "CATALOG_READ_TIMEOUT_SECONDS": "15",
            }
            if catalog_file
            else {}
        ),
    }


def test_service_runs_as_its_own_account(stack: str, deployment: Deployment) -> None:
    project = stack_config(stack)["gcp:project"]
    accounts = {account.name: account.inputs for account in deployment.all(ACCOUNT)}
    runtime = accounts["catalog-sa"]
    assert runtime["accountId"] == "catalog-grpc-run"
    assert runtime["project"] == project
    template = deployment.one(SERVICE).inputs["template"]
    assert template["serviceAccount"] == runtime["email"]
    assert "compute@developer" not in template["serviceAccount"]


def test_runtime_account_gets_only_telemetry_writing_on_the_project(deployment: Deployment) -> None:
    members = {account.name: account.inputs["member"] for account in deployment.all(ACCOUNT)}
    grants = [r.inputs for r in deployment.declared if r.type.startswith("gcp:projects/iAM")]
    # Project roles go to the CI accounts that run `pulumi preview` and `up`, and to the runtime account only
    # the two that export its metrics and traces: not to the pull-request deployer (its roles are on one
    # service), and nothing that reads or changes anything.
    assert {grant["member"] for grant in grants} == {
        members["ci-deployer"],
        members["ci-previewer"],
        members["catalog-sa"],
    }
    runtime_roles = sorted(grant["role"] for grant in grants if grant["member"] == members["catalog-sa"])
    assert runtime_roles == ["roles/cloudtrace.agent", "roles/monitoring.metricWriter"]


def test_image_is_built_for_cloud_run_and_deployed_by_digest(stack: str, deployment: Deployment) -> None:
    image = deployment.one(IMAGE).inputs
    project = stack_config(stack)["gcp:project"]
    registry = f"us-central1-docker.pkg.dev/{project}/catalog-grpc"
    assert image["push"] is True
    assert image["platforms"] == ["linux/amd64"]
    assert image["tags"] == [f"{registry}/catalog-grpc:{stack}"]
    # Relative to the program's directory, where Pulumi runs pulumi-docker-build: the same in every checkout.
    assert image["context"] == {"location": ".."}
    assert image["dockerfile"] == {"location": "../Dockerfile"}
    assert (INFRA_DIR / image["context"]["location"]).resolve() == REPO_ROOT
    assert (INFRA_DIR / image["dockerfile"]["location"]).resolve() == REPO_ROOT / "Dockerfile"
    # The token is a secret all the way into the state: the SDK wraps the whole list in the secret marker.
    registries = image["registries"]
    assert registries[SECRET_SIG] == SECRET_MARKER
    assert registries["value"] == [
        {
            "address": "us-central1-docker.pkg.dev",
            "username": "oauth2accesstoken",
            "password": "mock-access-token",
        }
    ]
    pinned = f"{registry}/catalog-grpc:{stack}@{DIGEST}"
    assert container(deployment)["image"] == pinned
    assert deployment.outputs["image"] == pinned


def test_registry_keeps_the_newest_versions_and_deletes_the_rest(stack: str, deployment: Deployment) -> None:
    repository = deployment.one(REPOSITORY).inputs
    assert repository["format"] == "DOCKER"
    assert repository["location"] == stack_config(stack)["gcp:region"]
    assert repository["repositoryId"] == "catalog-grpc"
    assert repository["cleanupPolicyDryRun"] is False
    policies = {policy["id"]: policy for policy in repository["cleanupPolicies"]}
    assert policies["keep-recent"] == {
        "id": "keep-recent",
        "action": "KEEP",
        # The deployed package only: pull-request builds have their own (tests/infra/test_container_image.py).
        "mostRecentVersions": {
            "packageNamePrefixes": ["catalog-grpc"],
            "keepCount": setting(stack, "keepImages"),
        },
    }
    assert policies["delete-older"] == {
        "id": "delete-older",
        "action": "DELETE",
        "condition": {"tagState": "ANY"},
    }


def test_invokers_follow_allow_unauthenticated_and_invokers(stack: str, deployment: Deployment) -> None:
    expected = (["allUsers"] if setting(stack, "allowUnauthenticated") else []) + list(
        setting(stack, "invokers")
    )
    # The service's own invokers (the pull-request deployer's bindings belong to the CI identity).
    bindings = [b for b in deployment.all(INVOKER) if b.parent.endswith("GrpcService::catalog")]
    assert sorted(binding.inputs["member"] for binding in bindings) == sorted(expected)
    for binding in bindings:
        assert binding.inputs["role"] == "roles/run.invoker"
        assert binding.inputs["name"] == "catalog-grpc"
        assert binding.inputs["location"] == stack_config(stack)["gcp:region"]


def test_service_settings(stack: str, deployment: Deployment) -> None:
    service = deployment.one(SERVICE).inputs
    assert service["name"] == "catalog-grpc"
    assert service["project"] == stack_config(stack)["gcp:project"]
    assert service["location"] == stack_config(stack)["gcp:region"]
    assert service["deletionProtection"] is setting(stack, "deletionProtection")
    # Neither stack has a front door: an empty ingress (the default) means anyone may reach it.
    assert setting(stack, "ingress") == ""
    assert service["ingress"] == "INGRESS_TRAFFIC_ALL"
    # The one audience the release and the client mint ID tokens for, accepted on every URL of the service.
    project = stack_config(stack)["gcp:project"]
    assert service["customAudiences"] == [f"//run.googleapis.com/projects/{project}/services/catalog-grpc"]
    assert service["launchStage"] == "BETA"


def test_apis_are_enabled_and_waited_for(deployment: Deployment) -> None:
    apis = {api.inputs["service"]: api for api in deployment.all(API)}
    assert {
        "serviceusage.googleapis.com",
        "run.googleapis.com",
        "artifactregistry.googleapis.com",
        "iam.googleapis.com",
    } <= set(apis)
    assert all(api.inputs["disableOnDestroy"] is False for api in apis.values())
    api_urns = {api.urn for api in apis.values()}
    # One delay after all of them, and everything that calls those APIs waits for the delay too.
    sleep = deployment.one(SLEEP)
    assert api_urns <= set(sleep.dependencies)
    for type_ in (SERVICE, REPOSITORY, IMAGE, POOL):
        assert api_urns | {sleep.urn} <= set(deployment.one(type_).dependencies), type_


def test_every_resource_belongs_to_a_component(deployment: Deployment) -> None:
    components = {r.urn for r in deployment.declared if r.type.startswith("catalog:index:")}
    assert {urn.rsplit("::", 1)[-1] for urn in components} >= {"apis", "catalog"}
    for resource in deployment.declared:
        if not resource.type.startswith("catalog:index:"):
            assert resource.parent in components, resource.name


def test_outputs(stack: str, deployment: Deployment) -> None:
    outputs = deployment.outputs
    assert outputs["url"] == "https://catalog-grpc-abc123-uc.a.run.app"
    assert outputs["target"] == "catalog-grpc-abc123-uc.a.run.app:443"
    assert outputs["serviceName"] == "catalog-grpc"
    assert (
        outputs["serviceAccount"]
        == f"catalog-grpc-run@{stack_config(stack)['gcp:project']}.iam.gserviceaccount.com"
    )
    assert outputs["region"] == stack_config(stack)["gcp:region"]


def test_dev_is_public_debuggable_and_disposable() -> None:
    config = stack_config("dev")
    # Public with the invoker check off: an allUsers binding fails under Domain Restricted Sharing.
    assert config[f"{PROJECT}:invokerIamDisabled"] is True
    assert config[f"{PROJECT}:allowUnauthenticated"] is False
    assert config[f"{PROJECT}:reflection"] is True
    assert config[f"{PROJECT}:minInstances"] in (0, 1)
    assert config[f"{PROJECT}:deletionProtection"] is False
    deployment = recorded("dev")
    assert deployment.one(SERVICE).inputs["invokerIamDisabled"] is True
    # No allUsers binding: the service's only bindings are the pull-request deployer's (prRevisions).
    pr_deployer = f"serviceAccount:catalog-grpc-pr-rev@{config['gcp:project']}.iam.gserviceaccount.com"
    assert {d.inputs["member"] for d in deployment.all(INVOKER)} == {pr_deployer}
    assert env_of(deployment)["ENABLE_REFLECTION"] == "true"
    assert deployment.one(SERVICE).inputs["deletionProtection"] is False


def test_prod_is_private_warm_and_protected() -> None:
    config = stack_config("prod")
    assert config[f"{PROJECT}:allowUnauthenticated"] is False
    assert config[f"{PROJECT}:invokerIamDisabled"] is False
    assert config[f"{PROJECT}:reflection"] is False
    min_instances = config[f"{PROJECT}:minInstances"]
    assert isinstance(min_instances, int)
    assert min_instances >= 1
    assert config[f"{PROJECT}:deletionProtection"] is True
    deployment = recorded("prod")
    members = {binding.inputs["member"] for binding in deployment.all(INVOKER)}
    assert "allUsers" not in members
    assert "allAuthenticatedUsers" not in members
    assert deployment.one(SERVICE).inputs["invokerIamDisabled"] is False
    assert env_of(deployment)["ENABLE_REFLECTION"] == "false"
    assert deployment.one(SERVICE).inputs["template"]["scaling"]["minInstanceCount"] >= 1
    assert deployment.one(SERVICE).inputs["deletionProtection"] is True
    # Only tokens of jobs on main that declare the `production` environment may act as its deployer;
    # pull requests preview prod as the previewer.
    project = config["gcp:project"]
    deployer_id = (
        f"projects/{project}/serviceAccounts/catalog-grpc-deployer@{project}.iam.gserviceaccount.com"
    )
    impersonations = [
        binding.inputs["member"]
        for binding in deployment.all(ACCOUNT_IAM)
        if binding.inputs["serviceAccountId"] == deployer_id
        and binding.inputs["role"] == "roles/iam.workloadIdentityUser"
    ]
    pool = f"projects/{POOL_NUMBER}/locations/global/workloadIdentityPools/github-1"
    assert impersonations == [
        f"principalSet://iam.googleapis.com/{pool}/attribute.ref_environment/refs/heads/main:production"
    ]


def test_dev_deploys_from_main_without_an_environment() -> None:
    deployment = recorded("dev")
    project = stack_config("dev")["gcp:project"]
    deployer_id = (
        f"projects/{project}/serviceAccounts/catalog-grpc-deployer@{project}.iam.gserviceaccount.com"
    )
    pool = f"projects/{POOL_NUMBER}/locations/global/workloadIdentityPools/github-1"
    assert [
        binding.inputs["member"]
        for binding in deployment.all(ACCOUNT_IAM)
        if binding.inputs["serviceAccountId"] == deployer_id
        and binding.inputs["role"] == "roles/iam.workloadIdentityUser"
    ] == [f"principalSet://iam.googleapis.com/{pool}/attribute.ref/refs/heads/main"]


@pytest.mark.parametrize("stack_name", STACKS)
def test_stack_files_use_placeholder_projects(stack_name: str) -> None:
    assert stack_config(stack_name)["gcp:project"] == f"my-gcp-project-{stack_name}"
