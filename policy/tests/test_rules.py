"""For every rule, a variant of a committed stack's resources that breaks it alone is reported by it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from engine import BY_NAME, Resource, analyze, first, pack_config, resources, violations
from pulumi_policy import EnforcementLevel

SERVICE = "gcp:cloudrunv2/service:Service"
REPOSITORY = "gcp:artifactregistry/repository:Repository"
PROJECT_IAM = "gcp:projects/iAMMember:IAMMember"
PROVIDER = "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider"
BUCKET = "gcp:storage/bucket:Bucket"
STACK_URN = "urn:pulumi:{stack}::catalog-grpc::"


def new(found: list[Resource], type_: str, name: str, props: dict[str, Any]) -> None:
    """Declare one more resource, as a later change to the program might."""
    stack = found[0]["urn"].split("::")[0].removeprefix("urn:pulumi:")
    found.append(
        {
            "type": type_,
            "name": name,
            "urn": f"{STACK_URN.format(stack=stack)}{type_}::{name}",
            "props": props,
        }
    )


def service(found: list[Resource]) -> dict[str, Any]:
    props: dict[str, Any] = first(found, SERVICE)["props"]
    return props


def container(found: list[Resource]) -> dict[str, Any]:
    first: dict[str, Any] = service(found)["template"]["containers"][0]
    return first


def compliant_bucket(found: list[Resource]) -> None:
    new(
        found,
        BUCKET,
        "catalog-data",
        {
            "name": "catalog-data",
            "location": "US-CENTRAL1",
            "uniformBucketLevelAccess": True,
            "publicAccessPrevention": "enforced",
        },
    )


@dataclass(frozen=True)
class Case:
    """A change that breaks one rule, on one stack, and what the rule must say about it."""

    id: str
    policy: str
    change: Callable[[list[Resource]], None]
    message: str
    stack: str = "prod"


def _set(
    getter: Callable[[list[Resource]], dict[str, Any]], key: str, value: Any
) -> Callable[[list[Resource]], None]:
    def change(found: list[Resource]) -> None:
        getter(found)[key] = value

    return change


def _drop(getter: Callable[[list[Resource]], dict[str, Any]], key: str) -> Callable[[list[Resource]], None]:
    def change(found: list[Resource]) -> None:
        del getter(found)[key]

    return change


def _public_repository(found: list[Resource]) -> None:
    new(
        found,
        "gcp:artifactregistry/repositoryIamMember:RepositoryIamMember",
        "catalog-public-pull",
        {
            "repository": "catalog-grpc",
            "location": "us-central1",
            "role": "roles/artifactregistry.reader",
            "member": "allUsers",
        },
    )


def _public_bucket_reader(found: list[Resource]) -> None:
    compliant_bucket(found)
    props = {"bucket": "catalog-data", "role": "roles/storage.objectViewer", "member": "allUsers"}
    new(found, "gcp:storage/bucketIAMMember:BucketIAMMember", "catalog-data-public", props)


def _public_pull_binding(found: list[Resource]) -> None:
    members = ["serviceAccount:ci@p.iam.gserviceaccount.com", "allAuthenticatedUsers"]
    props = {"repository": "catalog-grpc", "role": "roles/artifactregistry.reader", "members": members}
    new(found, "gcp:artifactregistry/repositoryIamBinding:RepositoryIamBinding", "catalog-pullers", props)


def _public_invoker(found: list[Resource]) -> None:
    new(
        found,
        "gcp:cloudrunv2/serviceIamMember:ServiceIamMember",
        "catalog-invoker-all",
        {
            "name": "catalog-grpc",
            "location": "us-central1",
            "role": "roles/run.invoker",
            "member": "allAuthenticatedUsers",
        },
    )


def _project_role(role: str) -> Callable[[list[Resource]], None]:
    def change(found: list[Resource]) -> None:
        # Any project grant will do: the CI identity's are the program's own.
        first(found, PROJECT_IAM)["props"]["role"] = role

    return change


def _owner_in_policy(found: list[Resource]) -> None:
    policy = {"bindings": [{"role": "roles/owner", "members": ["user:someone@example.com"]}]}
    new(
        found,
        "gcp:projects/iAMPolicy:IAMPolicy",
        "project-policy",
        {"project": "my-gcp-project-prod", "policyData": json.dumps(policy)},
    )


def _condition(condition: str | None) -> Callable[[list[Resource]], None]:
    def change(found: list[Resource]) -> None:
        props = first(found, PROVIDER)["props"]
        if condition is None:
            del props["attributeCondition"]
        else:
            props["attributeCondition"] = condition

    return change


def _bucket(key: str, value: Any) -> Callable[[list[Resource]], None]:
    def change(found: list[Resource]) -> None:
        compliant_bucket(found)
        first(found, BUCKET)["props"][key] = value

    return change


def _probe(kind: str, probe: dict[str, Any] | None) -> Callable[[list[Resource]], None]:
    def change(found: list[Resource]) -> None:
        if probe is None:
            del container(found)[kind]
        else:
            container(found)[kind] = probe

    return change


def _limits(cpu: str, memory: str) -> Callable[[list[Resource]], None]:
    def change(found: list[Resource]) -> None:
        container(found)["resources"]["limits"] = {"cpu": cpu, "memory": memory}

    return change


def _template(key: str, value: Any) -> Callable[[list[Resource]], None]:
    def change(found: list[Resource]) -> None:
        template = service(found)["template"]
        if value is None:
            del template[key]
        else:
            template[key] = value

    return change


def _scaling(key: str, value: Any) -> Callable[[list[Resource]], None]:
    def change(found: list[Resource]) -> None:
        scaling = service(found)["template"]["scaling"]
        if value is None:
            del scaling[key]
        else:
            scaling[key] = value

    return change


def _reflection_on(found: list[Resource]) -> None:
    for env in container(found)["envs"]:
        if env["name"] == "ENABLE_REFLECTION":
            env["value"] = "true"


CASES = [
    Case(
        "port-named-http1",
        "cloudrun-h2c-port",
        _set(lambda f: container(f)["ports"], "name", "http1"),
        "its port is named 'http1'; name it 'h2c'",
    ),
    Case("no-port", "cloudrun-h2c-port", _drop(container, "ports"), "no container declares a port"),
    Case(
        "startup-unnamed",
        "cloudrun-grpc-probes",
        _probe("startupProbe", {"grpc": {"service": ""}, "periodSeconds": 2}),
        "startupProbe.grpc.service is empty",
    ),
    Case("no-liveness", "cloudrun-grpc-probes", _probe("livenessProbe", None), "no livenessProbe"),
    Case(
        "http-liveness",
        "cloudrun-grpc-probes",
        _probe("livenessProbe", {"httpGet": {"path": "/healthz"}}),
        "livenessProbe uses httpGet",
    ),
    Case(
        "tcp-readiness",
        "cloudrun-grpc-probes",
        _probe("readinessProbe", {"tcpSocket": {"port": 8080}}),
        "readinessProbe uses tcpSocket",
    ),
    Case(
        "probe-other-port",
        "cloudrun-grpc-probes",
        _probe("startupProbe", {"grpc": {"port": 9090, "service": "catalog.ProductCatalog"}}),
        "startupProbe.grpc.port is 9090 but the container listens on 8080",
    ),
    Case(
        "image-by-tag",
        "cloudrun-image-digest",
        _set(container, "image", "us-central1-docker.pkg.dev/p/catalog-grpc/catalog-grpc:prod"),
        "is not pinned by digest",
    ),
    Case(
        "default-account",
        "cloudrun-service-account",
        _template("serviceAccount", "123456789012-compute@developer.gserviceaccount.com"),
        "the project's default compute account",
    ),
    Case(
        "no-account",
        "cloudrun-service-account",
        _template("serviceAccount", None),
        "template.serviceAccount is not set",
    ),
    Case("memory-too-big", "cloudrun-resources", _limits("1", "8Gi"), "Cloud Run allows 128Mi to 4Gi"),
    Case(
        "cpu-three", "cloudrun-resources", _limits("3", "2Gi"), "cpu '3' is not a CPU count Cloud Run accepts"
    ),
    Case(
        "fractional-cpu-concurrency",
        "cloudrun-resources",
        _limits("0.5", "512Mi"),
        "only with concurrency 1",
    ),
    Case("no-launch-stage", "cloudrun-launch-stage", _drop(service, "launchStage"), "BETA or less stable"),
    Case(
        "startup-timeout-equals-period",
        "cloudrun-probe-timings",
        _probe(
            "startupProbe",
            {"grpc": {"service": "catalog.ProductCatalog"}, "periodSeconds": 1, "timeoutSeconds": 1},
        ),
        "must be smaller than periodSeconds",
    ),
    Case(
        "gcs-volume-without-gen2",
        "cloudrun-execution-environment",
        _drop(lambda f: service(f)["template"], "executionEnvironment"),
        "EXECUTION_ENVIRONMENT_GEN2",
        stack="dev",
    ),
    Case("no-timeout", "cloudrun-request-timeout", _template("timeout", None), "template.timeout is not set"),
    Case(
        "timeout-too-long",
        "cloudrun-request-timeout",
        _template("timeout", "7200s"),
        "'7200s' is not a duration",
    ),
    Case(
        "public-invoker",
        "cloudrun-private",
        _public_invoker,
        "grants roles/run.invoker to allAuthenticatedUsers",
    ),
    Case(
        "invoker-iam-disabled",
        "cloudrun-private",
        _set(service, "invokerIamDisabled", True),
        "invokerIamDisabled is true",
    ),
    Case(
        "unprotected",
        "cloudrun-deletion-protection",
        _set(service, "deletionProtection", False),
        "deletionProtection is false on a production stack",
    ),
    Case(
        "cold-prod",
        "cloudrun-warm-instance",
        _scaling("minInstanceCount", 0),
        "minInstanceCount to at least 1",
    ),
    Case(
        "unbounded",
        "cloudrun-max-instances",
        _scaling("maxInstanceCount", None),
        "maxInstanceCount is not set",
    ),
    Case(
        "reflection-in-prod", "cloudrun-no-reflection-in-production", _reflection_on, "ENABLE_REFLECTION=true"
    ),
    Case(
        "no-cleanup",
        "artifact-registry-cleanup",
        _drop(lambda f: first(f, REPOSITORY)["props"], "cleanupPolicies"),
        "has no cleanupPolicies",
    ),
    Case(
        "cleanup-dry-run",
        "artifact-registry-cleanup",
        _set(lambda f: first(f, REPOSITORY)["props"], "cleanupPolicyDryRun", True),
        "cleanupPolicyDryRun is true",
    ),
    Case(
        "public-pull",
        "artifact-registry-private",
        _public_repository,
        "grants roles/artifactregistry.reader to allUsers",
    ),
    Case(
        "public-pull-binding",
        "artifact-registry-private",
        _public_pull_binding,
        "grants roles/artifactregistry.reader to allAuthenticatedUsers",
    ),
    Case(
        "public-bucket-reader",
        "storage-public-access-prevention",
        _public_bucket_reader,
        "grants roles/storage.objectViewer to allUsers on a bucket",
    ),
    Case(
        "key",
        "no-service-account-keys",
        lambda f: new(f, "gcp:serviceaccount/key:Key", "deployer-key", {"serviceAccountId": "x"}),
        "authenticate with Workload Identity Federation",
    ),
    Case(
        "project-account-user",
        "no-project-wide-impersonation",
        _project_role("roles/iam.serviceAccountUser"),
        "grants roles/iam.serviceAccountUser to",
    ),
    Case(
        "project-token-creator",
        "no-project-wide-impersonation",
        _project_role("roles/iam.serviceAccountTokenCreator"),
        "lets it act as every service account",
    ),
    Case("editor", "no-basic-roles", _project_role("roles/editor"), "grants roles/editor to"),
    Case(
        "owner-in-policy",
        "no-basic-roles",
        _owner_in_policy,
        "grants roles/owner to user:someone@example.com",
    ),
    Case("no-condition", "workload-identity-pins-repository", _condition(None), "has no attributeCondition"),
    Case(
        "owner-only",
        "workload-identity-pins-repository",
        _condition("assertion.repository_owner == 'my-org'"),
        "does not pin one repository",
    ),
    Case(
        "or-any",
        "workload-identity-pins-repository",
        _condition("assertion.repository == 'my-org/catalog-grpc' || true"),
        "does not pin one repository",
    ),
    Case(
        "not-uniform",
        "storage-uniform-access",
        _bucket("uniformBucketLevelAccess", False),
        "uniformBucketLevelAccess is not true",
    ),
    Case(
        "pap-inherited",
        "storage-public-access-prevention",
        _bucket("publicAccessPrevention", "inherited"),
        "publicAccessPrevention is inherited",
    ),
]


def test_every_policy_has_a_breaking_case() -> None:
    assert {case.policy for case in CASES} == set(BY_NAME)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_breaking_one_rule_is_reported_by_it_alone(case: Case) -> None:
    found = resources(case.stack)
    case.change(found)
    diagnostics = violations(analyze(found, pack_config(case.stack)))
    assert {d.policy for d in diagnostics} == {case.policy}, [f"{d.policy}: {d.message}" for d in diagnostics]
    assert any(case.message in d.message for d in diagnostics), [d.message for d in diagnostics]
    policy = BY_NAME[case.policy]
    assert all(d.message.startswith(policy.description) for d in diagnostics)
    expected = policy.enforcement_level or EnforcementLevel.MANDATORY
    assert {d.level for d in diagnostics} == {expected}


@pytest.mark.parametrize(
    "condition",
    [
        "assertion.repository_id == '123456789'",
        "assertion.repository == 'my-org/catalog-grpc' && assertion.ref == 'refs/heads/main'",
        "(assertion.repository_id == \"42\") && (assertion.ref == 'a' || assertion.ref == 'b')",
        "attribute.repository == 'my-org/x'",
    ],
)
def test_conditions_that_pin_one_repository_pass(condition: str) -> None:
    found = resources("prod")
    _condition(condition)(found)
    assert violations(analyze(found, pack_config("prod"))) == []


def test_a_compliant_bucket_passes() -> None:
    found = resources("prod")
    compliant_bucket(found)
    assert violations(analyze(found, pack_config("prod"))) == []


def test_dev_may_be_public_but_prod_may_not() -> None:
    dev = resources("dev")
    assert violations(analyze(dev, pack_config("dev"))) == []
    found = violations(analyze(dev, pack_config("prod")), EnforcementLevel.MANDATORY)
    assert {d.policy for d in found} == {"cloudrun-private", "cloudrun-deletion-protection"}


def test_a_config_value_of_the_wrong_type_is_an_error_naming_it() -> None:
    with pytest.raises(TypeError, match="policy config production must be true or false, not 'no'"):
        analyze(resources("prod"), {"cloudrun-deletion-protection": {"production": "no"}})
