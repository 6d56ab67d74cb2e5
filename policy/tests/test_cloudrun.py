"""Each Cloud Run rule, branch by branch, on a service built here: what it refuses, what it says, about what.

test_rules.py breaks each rule on what the program declares; these cases change one property of a compliant
service at a time, at and around each limit, so a rule that dropped a branch or moved a limit fails here.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from catalog_policy import cloudrun
from engine import Diagnostic, Resource, evaluate
from pulumi_policy import EnforcementLevel

from contract.cloudrun import PROBE_KINDS
from contract.server_env import BOOLEAN_WORDS

BY_NAME = {policy.name: policy for policy in cloudrun.POLICIES}
URN = f"urn:pulumi:prod::catalog-grpc::{cloudrun.SERVICE}::catalog"
DIGEST = "us-central1-docker.pkg.dev/p/catalog-grpc/catalog@sha256:" + "0123456789abcdef" * 4
ACCOUNT = "catalog-run@my-project.iam.gserviceaccount.com"
COMPLIANT: dict[str, Any] = {
    "launchStage": "GA",
    "deletionProtection": True,
    "template": {
        "serviceAccount": ACCOUNT,
        "timeout": "300s",
        "maxInstanceRequestConcurrency": 80,
        "scaling": {"minInstanceCount": 1, "maxInstanceCount": 10},
        "containers": [
            {
                "name": "server",
                "image": DIGEST,
                "ports": {"name": "h2c", "containerPort": 8080},
                "resources": {"limits": {"cpu": "1", "memory": "512Mi"}},
                "envs": [{"name": "ENABLE_REFLECTION", "value": "false"}],
                "startupProbe": {"grpc": {"service": "catalog.ProductCatalog"}, "periodSeconds": 2},
                "livenessProbe": {"grpc": {"service": ""}},
            }
        ],
    },
}
# Everything a Cloud Run rule checks, broken at once: each rule has something to say about it.
BROKEN: dict[str, Any] = {
    "launchStage": "GA",
    "deletionProtection": False,
    "template": {
        "scaling": {"minInstanceCount": 0},
        "volumes": [{"name": "data", "gcs": {"bucket": "b"}}],
        "containers": [
            {
                "image": "catalog:latest",
                "ports": {"name": "http1", "containerPort": 8080},
                "resources": {"limits": {"cpu": "3", "memory": "2Gi"}},
                "envs": [{"name": "ENABLE_REFLECTION", "value": "true"}],
                "startupProbe": {"grpc": {"service": ""}, "periodSeconds": 1, "timeoutSeconds": 1},
                "readinessProbe": {"grpc": {"service": "catalog.ProductCatalog"}},
            }
        ],
    },
}


def service(**changes: Any) -> dict[str, Any]:
    """The compliant service with `changes` applied: a key path with dots (`template.timeout`) to a value,
    or to None to leave it out."""
    props = copy.deepcopy(COMPLIANT)
    for path, value in changes.items():
        *parents, last = path.split(".")
        target: Any = props
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return props


def diagnostics(
    policy: str, props: dict[str, Any], type_: str = cloudrun.SERVICE, **config: Any
) -> list[Diagnostic]:
    resource: Resource = {"type": type_, "name": "catalog", "urn": URN, "props": props}
    return evaluate(BY_NAME[policy], resource, {policy: config} if config else {})


def said(policy: str, props: dict[str, Any], **config: Any) -> list[str]:
    """What a rule says about the service, after its description; each violation is about the service."""
    found = diagnostics(policy, props, **config)
    assert all(d.urn == URN and not d.unknown for d in found), found
    description = BY_NAME[policy].description
    assert all(d.message.startswith(f"{description}\n") for d in found), found
    return [d.message.removeprefix(f"{description}\n") for d in found]


def container(**changes: Any) -> dict[str, Any]:
    """The compliant service with its container changed (keys as in `service`, below the container)."""
    return service(**{f"template.containers.0.{key}": value for key, value in changes.items()})


def test_a_compliant_service_passes_every_rule() -> None:
    for policy in BY_NAME:
        assert said(policy, service()) == [], policy


@pytest.mark.parametrize("policy", sorted(BY_NAME))
def test_every_rule_reports_the_broken_service_and_only_services(policy: str) -> None:
    found = diagnostics(policy, copy.deepcopy(BROKEN))
    assert found, policy
    assert {d.urn for d in found} == {URN}
    expected = BY_NAME[policy].enforcement_level or EnforcementLevel.MANDATORY
    assert {d.level for d in found} == {expected}
    # The v1 service, and any other type, is not these rules' business.
    for other in ("gcp:cloudrun/service:Service", "gcp:cloudrunv2/job:Job"):
        assert diagnostics(policy, copy.deepcopy(BROKEN), type_=other) == [], other


# ---- cloudrun-h2c-port ----
NO_PORT = (
    "no container declares a port: set ports = {name: 'h2c', containerPort: <the port the server listens "
    "on>} on the server's container; without it Cloud Run speaks HTTP/1.1 and gRPC fails."
)


def port_named(label: str, name: object) -> str:
    return (
        f"{label}: its port is named {name!r}; name it 'h2c' so Cloud Run sends cleartext HTTP/2 to the "
        "container (gRPC needs HTTP/2 end to end)."
    )


SIDECAR = {"name": "proxy", "image": DIGEST}


@pytest.mark.parametrize(
    ("props", "messages"),
    [
        (container(ports=None), [NO_PORT]),
        (service(**{"template.containers": []}), [NO_PORT]),
        (service(**{"template.containers": [{"image": DIGEST}, SIDECAR]}), [NO_PORT]),
        (
            container(ports={"name": "http1", "containerPort": 8080}),
            [port_named("container server", "http1")],
        ),
        (container(ports={"containerPort": 8080}), [port_named("container server", None)]),
        (container(name=None, ports={"name": "H2C"}), [port_named("container #0", "H2C")]),
        # Older providers send a list of ports: each is checked.
        (
            container(ports=[{"name": "h2c"}, {"name": "http1"}]),
            [port_named("container server", "http1")],
        ),
        # A sidecar without a port is not the serving container; with one it is, and is checked too.
        (service(**{"template.containers": [COMPLIANT["template"]["containers"][0], SIDECAR]}), []),
        (
            service(
                **{
                    "template.containers": [
                        COMPLIANT["template"]["containers"][0],
                        {**SIDECAR, "ports": {"name": "http1"}},
                    ]
                }
            ),
            [port_named("container proxy", "http1")],
        ),
    ],
)
def test_the_serving_port_must_be_named_h2c(props: dict[str, Any], messages: list[str]) -> None:
    assert said("cloudrun-h2c-port", props) == messages


# ---- cloudrun-grpc-probes ----
def no_probe(kind: str) -> str:
    return (
        f"container server: no {kind}; add one with grpc = {{service: <health name>}} (Cloud Run's default "
        "is a TCP check, which passes before a gRPC server can answer and never fails)."
    )


def not_grpc(kind: str, other: str) -> str:
    return (
        f"container server: {kind} uses {other}; give it grpc = {{service: <health name>}}: a gRPC server "
        "speaks neither HTTP/1 nor answers a bare TCP check with its readiness."
    )


def unnamed(kind: str) -> str:
    return (
        f"container server: {kind}.grpc.service is empty; set it to the health name the server marks SERVING "
        "once it can answer (e.g. 'catalog.ProductCatalog'): '' is SERVING as soon as the process listens."
    )


def other_port(kind: str, port: str) -> str:
    return (
        f"container server: {kind}.grpc.port is {port} but the container listens on 8080; drop the port (it "
        "defaults to the container port) or make them equal."
    )


REQUIRED_PROBES = ("startupProbe", "livenessProbe")
NAMED_PROBES = ("startupProbe", "readinessProbe")


@pytest.mark.parametrize("kind", REQUIRED_PROBES)
def test_a_missing_startup_or_liveness_probe_is_refused(kind: str) -> None:
    assert said("cloudrun-grpc-probes", container(**{kind: None})) == [no_probe(kind)]


def test_a_readiness_probe_is_optional() -> None:
    assert "readinessProbe" not in COMPLIANT["template"]["containers"][0]
    assert said("cloudrun-grpc-probes", container(readinessProbe={"grpc": {"service": "x"}})) == []


@pytest.mark.parametrize("kind", PROBE_KINDS)
@pytest.mark.parametrize(
    ("action", "other"),
    [({"httpGet": {"path": "/"}}, "httpGet"), ({"tcpSocket": {}}, "tcpSocket"), ({}, "no action")],
)
def test_every_probe_must_be_grpc(kind: str, action: dict[str, Any], other: str) -> None:
    assert said("cloudrun-grpc-probes", container(**{kind: action})) == [not_grpc(kind, other)]


@pytest.mark.parametrize("kind", PROBE_KINDS)
@pytest.mark.parametrize("grpc", [{"service": ""}, {}])
def test_startup_and_readiness_ask_for_a_named_health_service_and_liveness_need_not(
    kind: str, grpc: dict[str, Any]
) -> None:
    messages = said("cloudrun-grpc-probes", container(**{kind: {"grpc": grpc}}))
    assert messages == ([unnamed(kind)] if kind in NAMED_PROBES else [])


@pytest.mark.parametrize("kind", PROBE_KINDS)
@pytest.mark.parametrize(
    ("port", "message"), [(9090, "9090"), (8081, "8081"), (8079.5, "8079.5"), (8080, None)]
)
def test_a_probe_on_another_port_than_the_container_s_is_refused(
    kind: str, port: float, message: str | None
) -> None:
    probe = {"grpc": {"service": "catalog.ProductCatalog", "port": port}}
    assert said("cloudrun-grpc-probes", container(**{kind: probe})) == (
        [other_port(kind, message)] if message else []
    )


def test_a_probe_port_is_checked_only_against_a_declared_container_port() -> None:
    probe = {"grpc": {"service": "catalog.ProductCatalog", "port": 9090}}
    assert said("cloudrun-grpc-probes", container(ports=None, startupProbe=probe)) == []
    assert said("cloudrun-grpc-probes", container(ports={"name": "h2c"}, startupProbe=probe)) == []
    # The first port of a list is the one the container listens on.
    two = [{"name": "h2c", "containerPort": 9090}, {"name": "h2c", "containerPort": 8080}]
    assert said("cloudrun-grpc-probes", container(ports=two, startupProbe=probe)) == []


def test_only_serving_containers_need_probes() -> None:
    props = service(**{"template.containers": [COMPLIANT["template"]["containers"][0], SIDECAR]})
    assert said("cloudrun-grpc-probes", props) == []


# ---- cloudrun-image-digest ----
def not_pinned(label: str, image: object) -> str:
    return (
        f"{label}: image {image!r} is not pinned by digest; deploy REGISTRY/PATH@sha256:<digest> "
        "(pulumi_docker_build.Image's `ref`), so a revision runs exactly what was built and reviewed."
    )


HEX64 = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        (DIGEST, True),
        (f"catalog@sha256:{HEX64}", True),
        (f"r/catalog:v1@sha256:{HEX64}", True),
        (f"r/catalog@sha256:{HEX64[:-1]}", False),  # 63 hex digits
        (f"r/catalog@sha256:{HEX64}0", False),  # 65
        (f"r/catalog@sha256:{HEX64.upper()}", False),
        (f"r/catalog@sha256:{HEX64[:-1]}g", False),
        (f"@sha256:{HEX64}", False),
        (f"r/cat alog@sha256:{HEX64}", False),
        (f"r/catalog@sha512:{HEX64}", False),
        ("r/catalog:prod", False),
        (None, False),
    ],
)
def test_an_image_is_pinned_only_by_a_sha256_digest(image: str | None, pinned: bool) -> None:
    assert said("cloudrun-image-digest", container(image=image)) == (
        [] if pinned else [not_pinned("container server", image)]
    )


def test_every_container_s_image_is_pinned_sidecars_too() -> None:
    props = service(**{"template.containers": [COMPLIANT["template"]["containers"][0], {"image": "proxy:1"}]})
    assert said("cloudrun-image-digest", props) == [not_pinned("container #1", "proxy:1")]


# ---- cloudrun-service-account ----
DEFAULT_ACCOUNT = "123456789012-compute@developer.gserviceaccount.com"
NO_ACCOUNT = (
    "template.serviceAccount is not set, so revisions run as the project's default compute account (Editor "
    "on the project); create a service account for the service and set it."
)


def default_account(account: str) -> str:
    return (
        f"template.serviceAccount is {account}, the project's default compute account (Editor on the "
        "project); create a service account with only the roles the service needs and set it."
    )


@pytest.mark.parametrize(
    ("account", "messages"),
    [
        (None, [NO_ACCOUNT]),
        ("", [NO_ACCOUNT]),
        (DEFAULT_ACCOUNT, [default_account(DEFAULT_ACCOUNT)]),
        (
            "1-compute@developer.gserviceaccount.com",
            [default_account("1-compute@developer.gserviceaccount.com")],
        ),
        ("-compute@developer.gserviceaccount.com", []),
        ("x1-compute@developer.gserviceaccount.com", []),
        ("1-compute@developerxgserviceaccount.com", []),
        ("1-compute@developer.gserviceaccount.com.example", []),
        ("catalog@123456789012.iam.gserviceaccount.com", []),
        (ACCOUNT, []),
    ],
)
def test_revisions_run_as_a_dedicated_account(account: str | None, messages: list[str]) -> None:
    assert said("cloudrun-service-account", service(**{"template.serviceAccount": account})) == messages


# ---- the rules whose checks are shared with the program (contract.cloudrun) ----
@pytest.mark.parametrize(
    ("policy", "props", "message"),
    [
        (
            "cloudrun-resources",
            container(resources={"limits": {"cpu": "3", "memory": "2Gi"}}),
            "cpu '3' is not a CPU count Cloud Run accepts: one of 1, 2, 4, 6, 8, or 0.08 to 0.99 in steps of "
            "0.01 (millicores such as 500m also work); change the container's resources.limits or "
            "template.maxInstanceRequestConcurrency.",
        ),
        (
            "cloudrun-resources",
            service(**{"template.maxInstanceRequestConcurrency": 1001}),
            "concurrency 1001 is not from 1 to 1000; change the container's resources.limits or "
            "template.maxInstanceRequestConcurrency.",
        ),
        (
            "cloudrun-launch-stage",
            container(readinessProbe={"grpc": {"service": "catalog.ProductCatalog"}}),
            "readiness probes are a preview feature (cloud.google.com/run/docs/configuring/healthchecks "
            "('Readiness probes (Preview)')): Cloud Run refuses them unless launchStage is BETA or less "
            "stable, and it is GA; set launchStage (this program derives it from the template's features).",
        ),
        (
            "cloudrun-probe-timings",
            container(startupProbe={"grpc": {"service": "x"}, "periodSeconds": 5, "timeoutSeconds": 5}),
            "startupProbe: timeoutSeconds 5 must be smaller than periodSeconds 5 (the API reference says "
            "both 'smaller than period' and 'period greater or equal than timeout': smaller satisfies both).",
        ),
        (
            "cloudrun-execution-environment",
            service(**{"template.volumes": [{"name": "data", "gcs": {"bucket": "b"}}]}),
            "Cloud Storage volume 'data' is a network file system, which the second generation offers: set "
            "template.executionEnvironment = EXECUTION_ENVIRONMENT_GEN2.",
        ),
    ],
)
def test_a_shared_check_is_reported_with_what_to_change(
    policy: str, props: dict[str, Any], message: str
) -> None:
    assert said(policy, props) == [message]


# ---- cloudrun-request-timeout ----
NO_TIMEOUT = (
    "template.timeout is not set; set it (e.g. '300s', at most '3600s'): it bounds every call and, for a "
    "streaming RPC, the whole stream, so choose it for the longest stream clients hold."
)


def test_the_longest_timeout_is_cloud_run_s() -> None:
    assert cloudrun.MAX_TIMEOUT_SECONDS == 3600


@pytest.mark.parametrize(
    ("timeout", "taken"),
    [
        ("1s", True),
        ("0.000000001s", True),
        ("0.5s", True),
        ("3599.999999999s", True),
        ("3600s", True),  # at the limit
        ("3600.000000001s", False),  # just above
        ("3601s", False),
        ("0s", False),
        ("0.0s", False),
        ("300", False),
        ("5m", False),
        ("-1s", False),
        (" 300s", False),
        ("1.0000000001s", False),  # ten decimals: finer than a nanosecond
        ("s", False),
        ("", False),
    ],
)
def test_the_request_timeout_is_a_duration_cloud_run_takes(timeout: str, taken: bool) -> None:
    assert said("cloudrun-request-timeout", service(**{"template.timeout": timeout})) == (
        []
        if taken
        else [f"template.timeout {timeout!r} is not a duration Cloud Run takes; use '1s' to '3600s'."]
    )


def test_a_service_without_a_timeout_is_told_to_set_one() -> None:
    assert said("cloudrun-request-timeout", service(**{"template.timeout": None})) == [NO_TIMEOUT]


# ---- production rules: deletion protection, a warm instance, no reflection ----
UNPROTECTED = (
    "deletionProtection is false on a production stack; set it to true (this program: "
    "catalog-grpc:deletionProtection), or mark the stack non-production in its policy config."
)
COLD = (
    "a production service that scales to zero makes some callers wait for a cold start; set "
    "template.scaling.minInstanceCount to at least 1 (this program: catalog-grpc:minInstances)."
)


@pytest.mark.parametrize(
    ("protection", "production", "refused"),
    [
        (False, None, True),  # unconfigured is production
        (False, True, True),
        (False, False, False),
        (True, None, False),
        (None, None, False),  # the provider's default is on
        ("false", None, False),  # not a boolean: the provider refuses it, not this rule
    ],
)
def test_a_production_service_keeps_deletion_protection(
    protection: object, production: bool | None, refused: bool
) -> None:
    config = {} if production is None else {"production": production}
    messages = said("cloudrun-deletion-protection", service(deletionProtection=protection), **config)
    assert messages == ([UNPROTECTED] if refused else [])


@pytest.mark.parametrize(
    ("template_min", "service_min", "warm"),
    [
        (1, None, True),  # at the limit
        (0, None, False),  # just below
        (2, None, True),
        (None, None, False),  # Cloud Run's default is zero
        (None, 1, True),  # the service-level setting counts too
        (None, 0, False),
        (0, 1, True),  # the larger of the two
        (1, 0, True),
        ("1", None, False),  # not a number: no instance is kept warm by it
    ],
)
def test_a_production_service_keeps_an_instance_warm(
    template_min: object, service_min: object, warm: bool
) -> None:
    props = service(**{"template.scaling.minInstanceCount": template_min})
    if service_min is not None:
        props["scaling"] = {"minInstanceCount": service_min}
    assert said("cloudrun-warm-instance", props) == ([] if warm else [COLD])
    # Outside production, scaling to zero is the point.
    assert said("cloudrun-warm-instance", props, production=False) == []


def test_a_service_caps_its_instance_count() -> None:
    message = (
        "template.scaling.maxInstanceCount is not set, so a traffic spike scales to Cloud Run's default of "
        "100 instances; set the most the service and its budget can take."
    )
    assert said("cloudrun-max-instances", service(**{"template.scaling.maxInstanceCount": None})) == [message]
    assert said("cloudrun-max-instances", service(**{"template.scaling.maxInstanceCount": "10"})) == [message]
    assert said("cloudrun-max-instances", service(**{"template.scaling.maxInstanceCount": 1})) == []


def reflection_on(value: str, label: str = "container server") -> str:
    return (
        f"{label}: ENABLE_REFLECTION={value} on a production stack lets every caller list and describe the "
        "API; turn it off (this program: catalog-grpc:reflection)."
    )


@pytest.mark.parametrize(
    ("value", "on"),
    [
        *BOOLEAN_WORDS.items(),  # every word the server reads, as it reads it
        ("TRUE", True),
        ("True", True),
        (" true ", True),
        ("0 ", False),
        ("yes", False),  # the server refuses to start with it: not this rule's to report
        ("", False),
        (None, False),
    ],
)
def test_reflection_is_refused_in_production_for_every_value_the_server_reads_as_on(
    value: str | None, on: bool
) -> None:
    env = {"name": "ENABLE_REFLECTION"} if value is None else {"name": "ENABLE_REFLECTION", "value": value}
    props = container(envs=[{"name": "LOG_LEVEL", "value": "true"}, env])
    assert said("cloudrun-no-reflection-in-production", props) == ([reflection_on(str(value))] if on else [])
    assert said("cloudrun-no-reflection-in-production", props, production=False) == []


def test_reflection_is_read_only_from_the_serving_container() -> None:
    envs = [{"name": "ENABLE_REFLECTION", "value": "true"}]
    sidecar = {**SIDECAR, "envs": envs}
    props = service(**{"template.containers": [COMPLIANT["template"]["containers"][0], sidecar]})
    assert said("cloudrun-no-reflection-in-production", props) == []
    props = service(**{"template.containers": [{**COMPLIANT["template"]["containers"][0], "name": None}]})
    props["template"]["containers"][0]["envs"] = envs
    del props["template"]["containers"][0]["name"]
    assert said("cloudrun-no-reflection-in-production", props) == [reflection_on("true", "container #0")]


def test_a_production_setting_that_is_not_a_boolean_names_the_key() -> None:
    for policy in (
        "cloudrun-deletion-protection",
        "cloudrun-warm-instance",
        "cloudrun-no-reflection-in-production",
    ):
        with pytest.raises(TypeError, match="policy config production must be true or false, not 'no'"):
            diagnostics(policy, service(), production="no")
