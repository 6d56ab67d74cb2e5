"""GrpcService: a gRPC server on Cloud Run in one region, with its runtime identity and invoker IAM."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated

import pulumi
import pulumi_gcp as gcp

from catalog_infra import revisions
from catalog_infra.config_keys import Key, integer
from catalog_infra.revisions import LiveService
from contract.cloudrun import (
    CPU_ALLOWED,
    GA,
    GEN2,
    MEMORY_ALLOWED,
    cpu_allowed,
    parse_cpu,
    parse_memory,
    required_launch_stage,
)
from contract.release import CANDIDATE, STABLE

REQUIRED_APIS = ("run.googleapis.com", "iam.googleapis.com")

# The port Cloud Run sends traffic to and passes in $PORT; the server reads $PORT, so the value only has to
# agree between the container port and the probes.
CONTAINER_PORT = 8080

# The server reports SERVING for its catalog in about 1-2 s here, even with 100k products. Probing every
# 2 s starts traffic soon after; the 1 s timeout is smaller than the period, which satisfies both readings of
# the API reference (timeout "smaller than period", period "greater or equal than timeout"). The probe passes
# at the first SERVING, so a generous 15 failures (30 s) costs nothing and keeps a slow cold start (a busy
# host, a bigger catalog) from turning into a restart loop; it stays far inside the 240 s a startup probe
# may take.
STARTUP_PERIOD_SECONDS = 2
STARTUP_TIMEOUT_SECONDS = 1
STARTUP_FAILURE_THRESHOLD = 15
# Liveness only has to catch a wedged process: three missed checks 10 s apart restart it, while a single slow
# answer under load does not.
LIVENESS_PERIOD_SECONDS = 10
LIVENESS_TIMEOUT_SECONDS = 2
LIVENESS_FAILURE_THRESHOLD = 3
# Readiness takes an instance out of rotation (no new requests; multi-region health counts it) while the
# catalog name is not SERVING: while loading, and from the moment a shutdown begins. Every 5 s with a 2 s
# answer and two misses: a busy instance is not dropped for one slow answer.
READINESS_PERIOD_SECONDS = 5
READINESS_TIMEOUT_SECONDS = 2
READINESS_FAILURE_THRESHOLD = 2
READINESS_SUCCESS_THRESHOLD = 1

# Where a catalog bucket is mounted, and how long the server retries a catalog it cannot read there yet
# (a Cloud Storage FUSE mount can fail or lag for a moment at start-up): half the startup probe's window,
# leaving the rest for parsing the catalog once read (4 s at 1M products: docs/catalog.md). Past it the
# server exits 1 with the reason, before the probe gives up on it without one.
CATALOG_MOUNT_PATH = "/mnt/catalog"
CATALOG_VOLUME = "catalog"
CATALOG_READ_TIMEOUT_SECONDS = STARTUP_PERIOD_SECONDS * STARTUP_FAILURE_THRESHOLD // 2


@dataclass(frozen=True)
class CatalogMount:
    """A catalog file in a Cloud Storage bucket, for the service to mount read-only and serve.

    `sha256` is the file's digest: the server refuses other bytes (CATALOG_SHA256), and it is part of the
    revision's template, so a new catalog is a new revision.
    """

    # The bucket's name, known before it is created: it is part of what names the revision.
    bucket: str
    object_name: str
    sha256: str

    @property
    def path(self) -> str:
        """The file's path inside the container."""
        return f"{CATALOG_MOUNT_PATH}/{self.object_name}"


INGRESS_VALUES = (
    "INGRESS_TRAFFIC_ALL",
    "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
)


def _cpu_accepted(cpu: str) -> bool:
    """Whether Cloud Run takes `cpu` as a CPU limit."""
    cores = parse_cpu(cpu)
    return cores is not None and cpu_allowed(cores)


@dataclass(frozen=True)
class GrpcServiceSettings:
    """The stack's keys this component reads, each declared on its field (config_keys.py reads them).

    A new key is a field here, its use below, its entry in Pulumi.yaml and its row in the docs' table: the
    program passes the validated settings whole (config.py's StackConfig is made of them).
    """

    # fmt: off
    min_instances: Annotated[int, integer("minInstances", 0, 1000)]
    max_instances: Annotated[int, integer("maxInstances", 1, 1000)]
    concurrency: Annotated[int, integer("concurrency", 1, 1000)]
    cpu: Annotated[str, Key("cpu", f"must be {CPU_ALLOWED}", test=_cpu_accepted)]
    memory: Annotated[str, Key("memory", f"must be {MEMORY_ALLOWED}", test=parse_memory)]
    request_timeout_seconds: Annotated[int, integer("requestTimeoutSeconds", 1, 3600)]
    allow_unauthenticated: Annotated[bool, Key("allowUnauthenticated")]
    invokers: Annotated[tuple[str, ...], Key("invokers",
        pattern=r"(user|serviceAccount|group|domain|principal|principalSet):\S+",
        allowed="each must be an IAM member: user:EMAIL, group:EMAIL, serviceAccount:EMAIL or domain:NAME; "
        "public access is invokerIamDisabled's (or allowUnauthenticated's) job, not an invoker")]
    deletion_protection: Annotated[bool, Key("deletionProtection")]
    # The configured ingress; empty is resolved by config.py to the one that suits the front door.
    ingress: Annotated[str, Key("ingress", choices=("", *INGRESS_VALUES),
        allowed=f"must be one of {', '.join(INGRESS_VALUES)}, or empty")]
    # Public without an allUsers binding: Cloud Run skips the invoker check (works under Domain Restricted
    # Sharing, which refuses allUsers). Not together with allow_unauthenticated or invokers.
    invoker_iam_disabled: Annotated[bool, Key("invokerIamDisabled")]
    # Request-based billing (true): CPU only while a call is in flight, which is all this server works in.
    # False keeps the CPU for the instance's life (instance-based billing): no throttled start for the first
    # call after a quiet spell, at the price of billing idle instances (cheaper with steady traffic).
    cpu_idle: Annotated[bool, Key("cpuIdle")]
    # fmt: on


@dataclass(frozen=True)
class GrpcServiceArgs:
    """Settings of one gRPC service on Cloud Run.

    `image` is the image to run, pinned by digest (ContainerImage's `image`). `env` is the
    server's own environment; the component adds MAX_CONCURRENT_RPCS (= concurrency), SERVER_PROCESSES and
    GOOGLE_CLOUD_PROJECT,
    and refuses PORT, which Cloud Run sets. `health_service` is the gRPC health name the startup and readiness
    probes ask for (SERVING only while the server can answer); liveness asks for "" (the server as a whole).
    """

    project: str
    region: str
    service_name: str
    image: pulumi.Input[str]
    health_service: str
    settings: GrpcServiceSettings
    env: Mapping[str, str] = field(default_factory=dict)
    # The account the same service in another region already runs as; None creates one.
    service_account: gcp.serviceaccount.Account | None = None
    # Audiences besides its run.app URLs the service accepts ID tokens for (a front door's https://DOMAIN).
    custom_audiences: Sequence[str] = ()
    startup_cpu_boost: bool = True
    depends_on: Sequence[pulumi.Resource] = ()
    # A catalog to serve from a bucket instead of the image's embedded one; the component grants its own
    # runtime account read access to that bucket (an account shared from another region has it already).
    catalog: CatalogMount | None = None
    # The traffic Cloud Run serves now (live.read_service), None before the first deploy: the program
    # declares it as it is, plus the tag candidate on the new revision (revisions.py).
    live: LiveService | None = None


def grpc_target(uri: str) -> str:
    """The host:443 a gRPC client dials for a Cloud Run https URL."""
    host = uri.removeprefix("https://").rstrip("/")
    return f"{host}:443"


def server_processes(cpu: str) -> int:
    """The server processes for a `cpu` limit: its whole CPUs, at least 1 (a fractional CPU runs one).

    Passed as SERVER_PROCESSES rather than left to the server's reading of the container's CPU quota,
    which Cloud Run's sandbox may not show (service/processes.py).
    """
    cores = parse_cpu(cpu)
    if cores is None:
        raise ValueError(f"cpu {cpu!r} is not a CPU count such as 1, 2 or 1000m")
    return max(1, int(cores))


def service_audience(project: str, service_name: str) -> str:
    """The custom audience of the service in every region: its resource name without the region.

    Cloud Run accepts ID tokens for a service's run.app URL and for its custom audiences, which apply to all
    serving revisions (cloud.google.com/run/docs/configuring/custom-audiences). One audience that does not
    depend on the URL dialled (region, tag, domain) leaves no doubt about which URL a token fits.
    """
    return f"//run.googleapis.com/projects/{project}/services/{service_name}"


def tag_url(uri: str, tag: str) -> str:
    """The https URL Cloud Run gives a tag: the service's host behind `TAG---`."""
    host = uri.removeprefix("https://").rstrip("/")
    return f"https://{tag}---{host}"


def _launch_stage(template: gcp.cloudrunv2.ServiceTemplateArgs) -> str | None:
    """The launch stage the template's preview features need; None (the provider's GA) when it uses none."""
    stage = required_launch_stage({"template": revisions.wire_form(template)})
    return None if stage == GA else stage


def _container(
    args: GrpcServiceArgs,
    image: pulumi.Output[str],
    env: Mapping[str, str],
    volume_mounts: Sequence[gcp.cloudrunv2.ServiceTemplateContainerVolumeMountArgs],
) -> gcp.cloudrunv2.ServiceTemplateContainerArgs:
    """The server's container: the h2c port, its environment and limits, and gRPC probes."""
    return gcp.cloudrunv2.ServiceTemplateContainerArgs(
        image=image,
        # "h2c" makes Cloud Run speak cleartext HTTP/2 to the container: gRPC end to end.
        ports=gcp.cloudrunv2.ServiceTemplateContainerPortsArgs(name="h2c", container_port=CONTAINER_PORT),
        envs=[
            gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(name=key, value=value)
            for key, value in sorted(env.items())
        ],
        volume_mounts=list(volume_mounts) or None,
        resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
            limits={"cpu": args.settings.cpu, "memory": args.settings.memory},
            cpu_idle=args.settings.cpu_idle,
            startup_cpu_boost=args.startup_cpu_boost,
        ),
        startup_probe=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeArgs(
            grpc=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeGrpcArgs(
                port=CONTAINER_PORT, service=args.health_service
            ),
            initial_delay_seconds=0,
            period_seconds=STARTUP_PERIOD_SECONDS,
            timeout_seconds=STARTUP_TIMEOUT_SECONDS,
            failure_threshold=STARTUP_FAILURE_THRESHOLD,
        ),
        liveness_probe=gcp.cloudrunv2.ServiceTemplateContainerLivenessProbeArgs(
            grpc=gcp.cloudrunv2.ServiceTemplateContainerLivenessProbeGrpcArgs(
                port=CONTAINER_PORT, service=""
            ),
            period_seconds=LIVENESS_PERIOD_SECONDS,
            timeout_seconds=LIVENESS_TIMEOUT_SECONDS,
            failure_threshold=LIVENESS_FAILURE_THRESHOLD,
        ),
        readiness_probe=gcp.cloudrunv2.ServiceTemplateContainerReadinessProbeArgs(
            grpc=gcp.cloudrunv2.ServiceTemplateContainerReadinessProbeGrpcArgs(
                port=CONTAINER_PORT, service=args.health_service
            ),
            success_threshold=READINESS_SUCCESS_THRESHOLD,
            period_seconds=READINESS_PERIOD_SECONDS,
            timeout_seconds=READINESS_TIMEOUT_SECONDS,
            failure_threshold=READINESS_FAILURE_THRESHOLD,
        ),
    )


def _member_slug(member: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", member).strip("-")


def _invoker_binding_names(members: Sequence[str]) -> dict[str, str]:
    """Each invoker's part of its binding's resource name: the member's letters and digits.

    Two members can differ only in punctuation (user:a.b@x and user:a-b@x), and Pulumi refuses two resources
    of one name: a member whose name an earlier one took gets its own hash as well. The first keeps the plain
    name, so adding a member at the end of the list never renames (replaces) an existing binding.
    """
    names: dict[str, str] = {}
    for member in members:
        slug = _member_slug(member)
        if slug in names.values():
            slug = f"{slug}-{hashlib.sha256(member.encode()).hexdigest()[:8]}"
        names[member] = slug
    return names


class GrpcService(pulumi.ComponentResource):
    """The Cloud Run service in one region, its runtime service account (unless shared) and invoker IAM."""

    # What it was declared with, and the account it runs as: another region's service repeats both.
    args: GrpcServiceArgs
    account: gcp.serviceaccount.Account
    url: pulumi.Output[str]
    target: pulumi.Output[str]
    revision: pulumi.Output[str]
    stable_target: pulumi.Output[str]
    candidate_target: pulumi.Output[str]
    candidate_url: pulumi.Output[str]
    image: pulumi.Output[str]
    service_name: pulumi.Output[str]
    service_account_email: pulumi.Output[str]
    service_account_name: pulumi.Output[str]
    region: str

    def __init__(self, name: str, args: GrpcServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("catalog:index:GrpcService", name, None, opts)
        settings = args.settings
        if "PORT" in args.env:
            raise ValueError("PORT is reserved: Cloud Run sets it, so the service must not")
        if settings.invoker_iam_disabled and (settings.allow_unauthenticated or settings.invokers):
            raise ValueError(
                "invoker_iam_disabled already makes the service public: "
                "do not also set allow_unauthenticated or invokers"
            )
        # Refuses a live split it cannot build on before any resource is declared.
        serving = revisions.serving_routes(args.live)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))

        image = pulumi.Output.from_input(args.image)
        account = args.service_account or gcp.serviceaccount.Account(
            f"{name}-sa",
            project=args.project,
            account_id=f"{args.service_name}-run",
            display_name=f"{args.service_name} (Cloud Run runtime)",
            description="Identity the service runs as; it needs no project roles (logs go to stdout).",
            opts=child,
        )

        env = {
            **args.env,
            "MAX_CONCURRENT_RPCS": str(settings.concurrency),
            "SERVER_PROCESSES": str(server_processes(settings.cpu)),
            "GOOGLE_CLOUD_PROJECT": args.project,
        }
        volumes: list[gcp.cloudrunv2.ServiceTemplateVolumeArgs] = []
        volume_mounts: list[gcp.cloudrunv2.ServiceTemplateContainerVolumeMountArgs] = []
        service_opts = child
        self.catalog_readers: list[gcp.storage.BucketIAMMember] = []
        if args.catalog is not None:
            env |= {
                "CATALOG_PATH": args.catalog.path,
                "CATALOG_SHA256": args.catalog.sha256,
                "CATALOG_READ_TIMEOUT_SECONDS": str(CATALOG_READ_TIMEOUT_SECONDS),
            }
            volumes.append(
                gcp.cloudrunv2.ServiceTemplateVolumeArgs(
                    name=CATALOG_VOLUME,
                    gcs=gcp.cloudrunv2.ServiceTemplateVolumeGcsArgs(
                        bucket=args.catalog.bucket, read_only=True
                    ),
                )
            )
            volume_mounts.append(
                gcp.cloudrunv2.ServiceTemplateContainerVolumeMountArgs(
                    name=CATALOG_VOLUME, mount_path=CATALOG_MOUNT_PATH
                )
            )
            if args.service_account is None:
                # Objects of this bucket only, and nothing in the project: the account still has no roles.
                self.catalog_readers.append(
                    gcp.storage.BucketIAMMember(
                        f"{name}-catalog-reader",
                        bucket=args.catalog.bucket,
                        role="roles/storage.objectViewer",
                        member=account.member,
                        opts=child,
                    )
                )
            # The first instance mounts the bucket as the account: the grant comes first.
            service_opts = pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(depends_on=self.catalog_readers)
            )
        template = gcp.cloudrunv2.ServiceTemplateArgs(
            service_account=account.email,
            timeout=f"{settings.request_timeout_seconds}s",
            max_instance_request_concurrency=settings.concurrency,
            scaling=gcp.cloudrunv2.ServiceTemplateScalingArgs(
                min_instance_count=settings.min_instances,
                max_instance_count=settings.max_instances,
            ),
            # Cloud Storage volumes are a network file system, which the second generation offers; set, not
            # left to Cloud Run's choice, so the template says what runs. Only with a catalog: the first
            # generation starts faster and allows less memory.
            execution_environment=GEN2 if args.catalog else None,
            volumes=volumes or None,
            containers=[_container(args, image, env, volume_mounts)],
        )
        # The service-level fields, then the revision's name: the hash of this very template (as the engine
        # receives it) and of those fields, so that no change to what is sent can keep an old name.
        # Preview features (a readiness probe) are refused under GA, which the provider assumes unset.
        launch_stage = _launch_stage(template)
        fields: dict[str, object] = {
            "ingress": settings.ingress,
            "invokerIamDisabled": settings.invoker_iam_disabled,
            "customAudiences": list(args.custom_audiences) or None,
            "launchStage": launch_stage,
        }
        revision = revisions.declared_revision(args.service_name, template, fields)
        template.revision = revision
        traffics = revision.apply(
            lambda name: [
                gcp.cloudrunv2.ServiceTrafficArgs(
                    type="TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION",
                    revision=route.revision,
                    percent=route.percent,
                    tag=route.tag or None,
                )
                for route in revisions.declared_traffic(serving, name)
            ]
        )
        service = gcp.cloudrunv2.Service(
            f"{name}-service",
            name=args.service_name,
            project=args.project,
            location=args.region,
            ingress=settings.ingress,
            deletion_protection=settings.deletion_protection,
            invoker_iam_disabled=settings.invoker_iam_disabled,
            custom_audiences=list(args.custom_audiences) or None,
            launch_stage=launch_stage,
            traffics=traffics,
            template=template,
            # The release's decisions, as live (LiveService.annotations says why).
            annotations=dict(args.live.annotations) if args.live and args.live.annotations else None,
            opts=service_opts,
        )

        members = (["allUsers"] if settings.allow_unauthenticated else []) + list(settings.invokers)
        for member, slug in _invoker_binding_names(members).items():
            gcp.cloudrunv2.ServiceIamMember(
                f"{name}-invoker-{slug}",
                project=args.project,
                location=args.region,
                name=service.name,
                role="roles/run.invoker",
                member=member,
                opts=child,
            )

        self.args = args
        self.account = account
        self.url = service.uri
        self.target = service.uri.apply(grpc_target)
        self.revision = revision
        self.stable_target = service.uri.apply(lambda uri: grpc_target(tag_url(uri, STABLE)))
        self.candidate_target = service.uri.apply(lambda uri: grpc_target(tag_url(uri, CANDIDATE)))
        self.candidate_url = service.uri.apply(lambda uri: tag_url(uri, CANDIDATE))
        self.image = image
        self.service_name = service.name
        self.service_account_email = account.email
        self.service_account_name = account.name
        self.region = args.region
        self.register_outputs(
            {
                "url": self.url,
                "target": self.target,
                "revision": self.revision,
                "stableTarget": self.stable_target,
                "candidateTarget": self.candidate_target,
                "image": self.image,
                "serviceName": self.service_name,
                "serviceAccount": self.service_account_email,
                "region": self.region,
            }
        )
