"""Cloud Run v2 services: what a gRPC server needs to be reachable, healthy, reproducible and right-sized.

Each rule reads only the properties it is about, so an unknown image at preview keeps only the image rule
from running, and a service that breaks one rule is reported by that rule alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import EnforcementLevel, ResourceValidationArgs, ResourceValidationPolicy

from contract.cloudrun import (
    execution_environment_problems,
    launch_stage_problems,
    probes_problems,
    service_resource_problems,
)
from contract.server_env import read_bool

from .props import as_list, containers, get, number, serving_containers, text
from .rule import rule
from .settings import PRODUCTION, PRODUCTION_SCHEMA, flag

SERVICE = "gcp:cloudrunv2/service:Service"

_DIGEST = re.compile(r"[^@\s]+@sha256:[0-9a-f]{64}")
_DEFAULT_COMPUTE_ACCOUNT = re.compile(r"[0-9]+-compute@developer\.gserviceaccount\.com")
_DURATION = re.compile(r"(?P<seconds>[0-9]+(?:\.[0-9]{1,9})?)s")
MAX_TIMEOUT_SECONDS = 3600


def _services_only(args: ResourceValidationArgs) -> bool:
    return args.resource_type == SERVICE


def _h2c_port(args: ResourceValidationArgs) -> Iterator[str]:
    if not _services_only(args):
        return
    serving = serving_containers(args.props)
    if not serving or not any(as_list(get(container, "ports")) for _, container in serving):
        yield (
            "no container declares a port: set ports = {name: 'h2c', containerPort: <the port the server "
            "listens on>} on the server's container; without it Cloud Run speaks HTTP/1.1 and gRPC fails."
        )
        return
    for label, container in serving:
        for port in as_list(get(container, "ports")):
            name = text(get(port, "name"))
            if name != "h2c":
                yield (
                    f"{label}: its port is named {name!r}; name it 'h2c' so Cloud Run sends cleartext HTTP/2 "
                    "to the container (gRPC needs HTTP/2 end to end)."
                )


def _container_port(container: Mapping[str, Any]) -> float | None:
    ports = as_list(get(container, "ports"))
    return number(get(ports[0], "containerPort")) if ports else None


def _check_probe(label: str, container: Mapping[str, Any], kind: str, *, named: bool) -> Iterator[str]:
    """One probe of a serving container: gRPC, on the container's port, on a named health service."""
    probe = get(container, kind)
    if probe is None:
        return
    grpc = get(probe, "grpc")
    if grpc is None:
        other = next((k for k in ("httpGet", "tcpSocket") if get(probe, k) is not None), "no action")
        yield (
            f"{label}: {kind} uses {other}; give it grpc = {{service: <health name>}}: a gRPC server speaks "
            "neither HTTP/1 nor answers a bare TCP check with its readiness."
        )
        return
    service = text(get(grpc, "service"))
    if named and not service:
        yield (
            f"{label}: {kind}.grpc.service is empty; set it to the health name the server marks SERVING once "
            "it can answer (e.g. 'catalog.ProductCatalog'): '' is SERVING as soon as the process listens."
        )
    probe_port, container_port = number(get(grpc, "port")), _container_port(container)
    if probe_port is not None and container_port is not None and probe_port != container_port:
        yield (
            f"{label}: {kind}.grpc.port is {probe_port:g} but the container listens on {container_port:g}; "
            "drop the port (it defaults to the container port) or make them equal."
        )


def _grpc_probes(args: ResourceValidationArgs) -> Iterator[str]:
    if not _services_only(args):
        return
    for label, container in serving_containers(args.props):
        for kind in ("startupProbe", "livenessProbe"):
            if get(container, kind) is None:
                yield (
                    f"{label}: no {kind}; add one with grpc = {{service: <health name>}} (Cloud Run's "
                    "default is a TCP check, which passes before a gRPC server can answer and never fails)."
                )
        # Startup and readiness gate traffic, so they must wait for the serving name; liveness only has to
        # catch a wedged process, which the whole-server status "" does.
        yield from _check_probe(label, container, "startupProbe", named=True)
        yield from _check_probe(label, container, "livenessProbe", named=False)
        yield from _check_probe(label, container, "readinessProbe", named=True)


def _image_digest(args: ResourceValidationArgs) -> Iterator[str]:
    if not _services_only(args):
        return
    for label, container in containers(args.props):
        image = text(get(container, "image"))
        if image is None or not _DIGEST.fullmatch(image):
            yield (
                f"{label}: image {image!r} is not pinned by digest; deploy REGISTRY/PATH@sha256:<digest> "
                "(pulumi_docker_build.Image's `ref`), so a revision runs exactly what was built and reviewed."
            )


def _service_account(args: ResourceValidationArgs) -> Iterator[str]:
    if not _services_only(args):
        return
    account = text(get(args.props, "template", "serviceAccount"))
    if not account:
        yield (
            "template.serviceAccount is not set, so revisions run as the project's default compute account "
            "(Editor on the project); create a service account for the service and set it."
        )
    elif _DEFAULT_COMPUTE_ACCOUNT.fullmatch(account):
        yield (
            f"template.serviceAccount is {account}, the project's default compute account (Editor on the "
            "project); create a service account with only the roles the service needs and set it."
        )


def _resources(args: ResourceValidationArgs) -> Iterator[str]:
    if not _services_only(args):
        return
    for problem in service_resource_problems(args.props):
        yield f"{problem}; change the container's resources.limits or template.maxInstanceRequestConcurrency."


def _launch_stage(args: ResourceValidationArgs) -> Iterator[str]:
    if not _services_only(args):
        return
    for problem in launch_stage_problems(args.props):
        yield f"{problem}; set launchStage (this program derives it from the template's features)."


def _probe_timings(args: ResourceValidationArgs) -> Iterator[str]:
    if not _services_only(args):
        return
    for problem in probes_problems(args.props):
        yield f"{problem}."


def _execution_environment(args: ResourceValidationArgs) -> Iterator[str]:
    if not _services_only(args):
        return
    for problem in execution_environment_problems(args.props):
        yield f"{problem}."


def _request_timeout(args: ResourceValidationArgs) -> Iterator[str]:
    if not _services_only(args):
        return
    timeout = text(get(args.props, "template", "timeout"))
    if timeout is None:
        yield (
            "template.timeout is not set; set it (e.g. '300s', at most '3600s'): it bounds every call and, "
            "for a streaming RPC, the whole stream, so choose it for the longest stream clients hold."
        )
        return
    match = _DURATION.fullmatch(timeout)
    if match is None or not 0 < float(match["seconds"]) <= MAX_TIMEOUT_SECONDS:
        yield f"template.timeout {timeout!r} is not a duration Cloud Run takes; use '1s' to '3600s'."


def _deletion_protection(args: ResourceValidationArgs) -> Iterator[str]:
    if not _services_only(args) or not flag(args, PRODUCTION, default=True):
        return
    # Absent means the provider's default, which is on.
    if get(args.props, "deletionProtection") is False:
        yield (
            "deletionProtection is false on a production stack; set it to true (this program: "
            "catalog-grpc:deletionProtection), or mark the stack non-production in its policy config."
        )


def _min_instances(props: Mapping[str, Any]) -> float:
    counts = [
        number(get(props, "template", "scaling", "minInstanceCount")),
        number(get(props, "scaling", "minInstanceCount")),
    ]
    return max((count for count in counts if count is not None), default=0)


def _warm_instance(args: ResourceValidationArgs) -> Iterator[str]:
    if not _services_only(args) or not flag(args, PRODUCTION, default=True):
        return
    if _min_instances(args.props) < 1:
        yield (
            "a production service that scales to zero makes some callers wait for a cold start; set "
            "template.scaling.minInstanceCount to at least 1 (this program: catalog-grpc:minInstances)."
        )


def _max_instances(args: ResourceValidationArgs) -> Iterator[str]:
    if not _services_only(args):
        return
    if number(get(args.props, "template", "scaling", "maxInstanceCount")) is None:
        yield (
            "template.scaling.maxInstanceCount is not set, so a traffic spike scales to Cloud Run's default "
            "of 100 instances; set the most the service and its budget can take."
        )


def _reflection_in_production(args: ResourceValidationArgs) -> Iterator[str]:
    if not _services_only(args) or not flag(args, PRODUCTION, default=True):
        return
    for label, container in serving_containers(args.props):
        for env in as_list(get(container, "envs")):
            # Read as the server reads it: `1`, `TRUE` and ` true ` turn reflection on too.
            value = text(get(env, "value"))
            if text(get(env, "name")) == "ENABLE_REFLECTION" and value is not None and read_bool(value):
                yield (
                    f"{label}: ENABLE_REFLECTION={value} on a production stack lets every caller list and "
                    "describe the API; turn it off (this program: catalog-grpc:reflection)."
                )


POLICIES = [
    ResourceValidationPolicy(
        name="cloudrun-h2c-port",
        description="Cloud Run services serve gRPC over a port named h2c (HTTP/2 end to end).",
        validate=rule(_h2c_port),
    ),
    ResourceValidationPolicy(
        name="cloudrun-grpc-probes",
        description="Cloud Run services have gRPC startup and liveness probes (and readiness, if any) "
        "on the container's port; startup and readiness ask for a named health service.",
        validate=rule(_grpc_probes),
    ),
    ResourceValidationPolicy(
        name="cloudrun-image-digest",
        description="Cloud Run services deploy images pinned by digest.",
        validate=rule(_image_digest),
    ),
    ResourceValidationPolicy(
        name="cloudrun-service-account",
        description="Cloud Run services run as a dedicated service account, not the default compute account.",
        validate=rule(_service_account),
    ),
    ResourceValidationPolicy(
        name="cloudrun-resources",
        description="Cloud Run services ask for a CPU, memory and concurrency combination Cloud Run accepts.",
        validate=rule(_resources),
    ),
    ResourceValidationPolicy(
        name="cloudrun-launch-stage",
        description="Cloud Run services declare a launch stage that allows the preview features they use.",
        validate=rule(_launch_stage),
    ),
    ResourceValidationPolicy(
        name="cloudrun-probe-timings",
        description="Cloud Run probes time out within their period; startup probes pass within 240 s.",
        validate=rule(_probe_timings),
    ),
    ResourceValidationPolicy(
        name="cloudrun-execution-environment",
        description="Cloud Run services mounting Cloud Storage run the second generation (512Mi or more).",
        validate=rule(_execution_environment),
    ),
    ResourceValidationPolicy(
        name="cloudrun-request-timeout",
        description="Cloud Run services set a request timeout.",
        validate=rule(_request_timeout),
    ),
    ResourceValidationPolicy(
        name="cloudrun-deletion-protection",
        description="Cloud Run services of production stacks are protected from deletion.",
        validate=rule(_deletion_protection),
        config_schema=PRODUCTION_SCHEMA,
    ),
    ResourceValidationPolicy(
        name="cloudrun-warm-instance",
        description="Production Cloud Run services keep at least one instance warm.",
        validate=rule(_warm_instance),
        enforcement_level=EnforcementLevel.ADVISORY,
        config_schema=PRODUCTION_SCHEMA,
    ),
    ResourceValidationPolicy(
        name="cloudrun-max-instances",
        description="Cloud Run services cap their instance count.",
        validate=rule(_max_instances),
        enforcement_level=EnforcementLevel.ADVISORY,
    ),
    ResourceValidationPolicy(
        name="cloudrun-no-reflection-in-production",
        description="Production gRPC services do not serve reflection.",
        validate=rule(_reflection_in_production),
        enforcement_level=EnforcementLevel.ADVISORY,
        config_schema=PRODUCTION_SCHEMA,
    ),
]
