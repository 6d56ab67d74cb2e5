"""GrpcService: a gRPC server on Cloud Run with its registry, image, runtime identity and invoker IAM."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_docker_build as docker_build
import pulumi_gcp as gcp

from catalog_infra import revisions
from catalog_infra.revisions import CANDIDATE, STABLE, LiveService

REQUIRED_APIS = ("run.googleapis.com", "artifactregistry.googleapis.com", "iam.googleapis.com")

# The port Cloud Run sends traffic to and passes in $PORT; the server reads $PORT, so the value only has to
# agree between the container port and the probes.
CONTAINER_PORT = 8080

# The server reports SERVING for its catalog in about 1-2 s here, even with 100k products. Probing every
# second starts traffic about as soon as it can. The probe passes at the first SERVING, so a generous 30
# failures (30 s) costs nothing and keeps a slow cold start (a busy host, a bigger catalog) from turning
# into a restart loop; it stays far inside the 240 s a startup probe may take.
STARTUP_PERIOD_SECONDS = 1
STARTUP_TIMEOUT_SECONDS = 1
STARTUP_FAILURE_THRESHOLD = 30
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


@dataclass(frozen=True)
class ImageBuild:
    """What to build when no prebuilt image is given: a Docker context and Dockerfile, pushed with a tag.

    pulumi-docker-build keeps both paths in the state and diffs them, and resolves relative ones against its
    working directory, which Pulumi sets to the program's (`main`). Pass them relative to that directory:
    absolute ones differ between checkouts, so every machine would see a changed image and roll a revision.
    """

    context: Path
    dockerfile: Path
    tag: str = "latest"


@dataclass(frozen=True)
class GrpcServiceArgs:
    """Settings of one gRPC service on Cloud Run.

    `image` is either a prebuilt image pinned by digest (deployed as is) or an ImageBuild. `env` is the
    server's own environment; the component adds MAX_CONCURRENT_RPCS (= concurrency) and GOOGLE_CLOUD_PROJECT,
    and refuses PORT, which Cloud Run sets. `health_service` is the gRPC health name the startup and readiness
    probes ask for (SERVING only while the server can answer); liveness asks for "" (the server as a whole).
    """

    project: str
    region: str
    service_name: str
    image: str | ImageBuild
    health_service: str
    min_instances: int
    max_instances: int
    concurrency: int
    cpu: str
    memory: str
    request_timeout_seconds: int
    ingress: str
    deletion_protection: bool
    allow_unauthenticated: bool
    invokers: Sequence[str] = ()
    # Public without an allUsers binding: Cloud Run skips the invoker check (works under Domain Restricted
    # Sharing, which refuses allUsers). Not together with allow_unauthenticated or invokers.
    invoker_iam_disabled: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    keep_images: int = 10
    # Request-based billing: the server does no work between requests, so CPU outside them buys nothing.
    cpu_idle: bool = True
    startup_cpu_boost: bool = True
    depends_on: Sequence[pulumi.Resource] = ()
    # The traffic Cloud Run serves now (live.read_service), None before the first deploy: the program
    # declares it as it is, plus the tag candidate on the new revision (revisions.py).
    live: LiveService | None = None


def grpc_target(uri: str) -> str:
    """The host:443 a gRPC client dials for a Cloud Run https URL."""
    host = uri.removeprefix("https://").rstrip("/")
    return f"{host}:443"


def tag_url(uri: str, tag: str) -> str:
    """The https URL Cloud Run gives a tag: the service's host behind `TAG---`."""
    host = uri.removeprefix("https://").rstrip("/")
    return f"https://{tag}---{host}"


def _member_slug(member: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", member).strip("-")


class GrpcService(pulumi.ComponentResource):
    """An Artifact Registry repository, the image, a runtime service account and the Cloud Run service."""

    url: pulumi.Output[str]
    target: pulumi.Output[str]
    revision: pulumi.Output[str]
    stable_target: pulumi.Output[str]
    candidate_target: pulumi.Output[str]
    candidate_url: pulumi.Output[str]
    image_repository: pulumi.Output[str]
    image: pulumi.Output[str]
    service_name: pulumi.Output[str]
    service_account_email: pulumi.Output[str]
    service_account_name: pulumi.Output[str]
    region: str

    def __init__(self, name: str, args: GrpcServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("catalog:index:GrpcService", name, None, opts)
        if "PORT" in args.env:
            raise ValueError("PORT is reserved: Cloud Run sets it, so the service must not")
        if args.invoker_iam_disabled and (args.allow_unauthenticated or args.invokers):
            raise ValueError(
                "invoker_iam_disabled already makes the service public: "
                "do not also set allow_unauthenticated or invokers"
            )
        # Refuses a live split it cannot build on before any resource is declared.
        serving = revisions.serving_routes(args.live)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))

        repository = gcp.artifactregistry.Repository(
            f"{name}-repo",
            project=args.project,
            location=args.region,
            repository_id=args.service_name,
            format="DOCKER",
            description=f"Images of the {args.service_name} Cloud Run service",
            # Keep policies win over delete policies: everything but the newest keep_images versions goes.
            cleanup_policy_dry_run=False,
            cleanup_policies=[
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="keep-recent",
                    action="KEEP",
                    most_recent_versions=gcp.artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs(
                        keep_count=args.keep_images,
                    ),
                ),
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-older",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(tag_state="ANY"),
                ),
            ],
            opts=child,
        )

        image: pulumi.Output[str]
        if isinstance(args.image, ImageBuild):
            image = self._build(name, args, args.image, repository, child)
        else:
            image = pulumi.Output.from_input(args.image)

        account = gcp.serviceaccount.Account(
            f"{name}-sa",
            project=args.project,
            account_id=f"{args.service_name}-run",
            display_name=f"{args.service_name} (Cloud Run runtime)",
            description="Identity the service runs as; it needs no project roles (logs go to stdout).",
            opts=child,
        )

        env = {
            **args.env,
            "MAX_CONCURRENT_RPCS": str(args.concurrency),
            "GOOGLE_CLOUD_PROJECT": args.project,
        }
        # Everything in the template below but the image: with the image, it names the revision. A setting
        # left out would make Cloud Run refuse the deploy (same name, other configuration), not go unseen.
        settings = {
            "serviceAccount": f"{args.service_name}-run",
            "timeout": args.request_timeout_seconds,
            "concurrency": args.concurrency,
            "scaling": [args.min_instances, args.max_instances],
            "port": CONTAINER_PORT,
            "env": env,
            "resources": [args.cpu, args.memory, args.cpu_idle, args.startup_cpu_boost],
            "healthService": args.health_service,
            "startupProbe": [STARTUP_PERIOD_SECONDS, STARTUP_TIMEOUT_SECONDS, STARTUP_FAILURE_THRESHOLD],
            "livenessProbe": [LIVENESS_PERIOD_SECONDS, LIVENESS_TIMEOUT_SECONDS, LIVENESS_FAILURE_THRESHOLD],
            "readinessProbe": [
                READINESS_PERIOD_SECONDS,
                READINESS_TIMEOUT_SECONDS,
                READINESS_FAILURE_THRESHOLD,
                READINESS_SUCCESS_THRESHOLD,
            ],
        }
        revision = image.apply(lambda ref: revisions.revision_name(args.service_name, ref, settings))
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
            ingress=args.ingress,
            deletion_protection=args.deletion_protection,
            invoker_iam_disabled=args.invoker_iam_disabled,
            traffics=traffics,
            template=gcp.cloudrunv2.ServiceTemplateArgs(
                revision=revision,
                service_account=account.email,
                timeout=f"{args.request_timeout_seconds}s",
                max_instance_request_concurrency=args.concurrency,
                scaling=gcp.cloudrunv2.ServiceTemplateScalingArgs(
                    min_instance_count=args.min_instances,
                    max_instance_count=args.max_instances,
                ),
                containers=[
                    gcp.cloudrunv2.ServiceTemplateContainerArgs(
                        image=image,
                        # "h2c" makes Cloud Run speak cleartext HTTP/2 to the container: gRPC end to end.
                        ports=gcp.cloudrunv2.ServiceTemplateContainerPortsArgs(
                            name="h2c", container_port=CONTAINER_PORT
                        ),
                        envs=[
                            gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(name=key, value=value)
                            for key, value in sorted(env.items())
                        ],
                        resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
                            limits={"cpu": args.cpu, "memory": args.memory},
                            cpu_idle=args.cpu_idle,
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
                            period_seconds=READINESS_PERIOD_SECONDS,
                            timeout_seconds=READINESS_TIMEOUT_SECONDS,
                            failure_threshold=READINESS_FAILURE_THRESHOLD,
                            success_threshold=READINESS_SUCCESS_THRESHOLD,
                        ),
                    )
                ],
            ),
            opts=child,
        )

        members = (["allUsers"] if args.allow_unauthenticated else []) + list(args.invokers)
        for member in members:
            gcp.cloudrunv2.ServiceIamMember(
                f"{name}-invoker-{_member_slug(member)}",
                project=args.project,
                location=args.region,
                name=service.name,
                role="roles/run.invoker",
                member=member,
                opts=child,
            )

        self.url = service.uri
        self.target = service.uri.apply(grpc_target)
        self.revision = revision
        self.stable_target = service.uri.apply(lambda uri: grpc_target(tag_url(uri, STABLE)))
        self.candidate_target = service.uri.apply(lambda uri: grpc_target(tag_url(uri, CANDIDATE)))
        self.candidate_url = service.uri.apply(lambda uri: tag_url(uri, CANDIDATE))
        # Where other builds of this service's image go (pull-request revisions push there).
        self.image_repository = repository.registry_uri.apply(lambda uri: f"{uri}/{args.service_name}")
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

    def _build(
        self,
        name: str,
        args: GrpcServiceArgs,
        build: ImageBuild,
        repository: gcp.artifactregistry.Repository,
        opts: pulumi.ResourceOptions,
    ) -> pulumi.Output[str]:
        """Build the image for Cloud Run's platform, push it, and return its reference with the digest."""
        access_token = gcp.organizations.get_client_config_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        ).access_token
        image = docker_build.Image(
            f"{name}-image",
            context=docker_build.BuildContextArgs(location=str(build.context)),
            dockerfile=docker_build.DockerfileArgs(location=str(build.dockerfile)),
            platforms=[docker_build.Platform.LINUX_AMD64],
            tags=[repository.registry_uri.apply(lambda uri: f"{uri}/{args.service_name}:{build.tag}")],
            push=True,
            # Previews build (without pushing) when every input is known. On a stack's first preview the
            # registry's address is not, and pulumi-docker-build skips the build ("Skipping preview build
            # because some inputs are unknown"): the pull-request workflow builds the Dockerfile itself.
            build_on_preview=True,
            registries=[
                docker_build.RegistryArgs(
                    address=f"{args.region}-docker.pkg.dev",
                    username="oauth2accesstoken",
                    password=pulumi.Output.secret(access_token),
                )
            ],
            opts=opts,
        )
        # `ref` is the pushed tag with its digest: a new build is a new revision, an unchanged one is not.
        return image.ref
