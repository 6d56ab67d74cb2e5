"""The Pulumi program: validate config, declare services, front door, observability, CI identity, export."""

import dataclasses
import os
from pathlib import Path

import pulumi
from catalog_infra import (
    catalog_data,
    ci_identity,
    ci_state,
    container_image,
    front_door,
    grpc_service,
    live,
    observability,
)
from catalog_infra.apis import ProjectApis
from catalog_infra.config import load, load_observability

from catalog import SERVICE_NAME, UNARY_METHODS
from contract.release import CANDIDATE

# The Docker context is the repository root, found from this file and passed relative to the working
# directory (infra/, where Pulumi runs the program and its providers): the same in every checkout.
REPO_ROOT = Path(os.path.relpath(Path(__file__).resolve().parent.parent))
# The name the server marks SERVING only while it can answer (catalog loaded, no shutdown begun): what the
# startup probe waits for and the readiness probe watches.
HEALTH_SERVICE = SERVICE_NAME

config = load()
objectives = load_observability(config)
# The catalog file, checked by the server's own loader (and against `memory`) before any resource, and saved
# ready to serve under build/.
catalog = (
    catalog_data.check_catalog(REPO_ROOT, config.catalog_file, config.memory, REPO_ROOT / "build")
    if config.catalog_file
    else None
)
# The traffic Cloud Run serves now in each region, checked: the program declares it as it is (revisions.py).
live_services = live.read_live_services(config)

apis = ProjectApis(
    "apis",
    project=config.project,
    apis=grpc_service.REQUIRED_APIS
    + observability.REQUIRED_APIS
    + container_image.REQUIRED_APIS
    + (front_door.REQUIRED_APIS if config.domain else ())
    + (ci_identity.REQUIRED_APIS if config.github_repository else ())
    + (ci_state.REQUIRED_APIS if config.ci_state_backend else ())
    + (catalog_data.REQUIRED_APIS if catalog else ()),
)

# One repository and one build in the home region (gcp:region): Cloud Run pulls across regions.
image = container_image.ContainerImage(
    "catalog",
    container_image.ContainerImageArgs(
        project=config.project,
        region=config.region,
        repository_id=config.service_name,
        image=config.image
        or container_image.ImageBuild(
            context=REPO_ROOT, dockerfile=REPO_ROOT / "Dockerfile", tag=pulumi.get_stack()
        ),
        keep_images=config.keep_images,
        depends_on=[apis],
    ),
)

# With a catalog file: one bucket in the home region, which every region's service mounts.
data = (
    catalog_data.CatalogData(
        "catalog-data",
        catalog_data.CatalogDataArgs(
            project=config.project,
            region=config.region,
            bucket_name=f"{config.project}-{config.service_name}-catalogs",
            catalog=catalog.summary,
            source=REPO_ROOT / catalog.summary.path,
            saved=catalog.saved,
            deletion_protection=config.deletion_protection,
            depends_on=[apis],
        ),
    )
    if catalog
    else None
)

service = grpc_service.GrpcService(
    "catalog",
    grpc_service.GrpcServiceArgs(
        project=config.project,
        region=config.region,
        service_name=config.service_name,
        image=image.image,
        health_service=HEALTH_SERVICE,
        # Its keys (grpc_service.GrpcServiceSettings), validated, the joined rules applied (config.py).
        settings=config,
        # The keys that set the server's environment (ENABLE_REFLECTION, LOG_LEVEL, ...): config.py's `env`.
        env=config.server_env,
        # One audience every URL of the service accepts in every region (the release and the client mint ID
        # tokens for it), and with a front door its https://DOMAIN, which callers of a domain expect.
        custom_audiences=(
            grpc_service.service_audience(config.project, config.service_name),
            *((f"https://{config.domain}",) if config.domain else ()),
        ),
        # A service starts reading its catalog at once: the object must be there.
        depends_on=[apis, *([data] if data else [])],
        catalog=data.mount if data else None,
        live=live_services[config.region],
    ),
)
# The other regions: the same image and settings, run as the same account (and its catalog grant), each
# over its own live traffic; their names carry the region.
services = [service] + [
    grpc_service.GrpcService(
        f"catalog-{region}",
        dataclasses.replace(
            service.args,
            region=region,
            service_account=service.account,
            live=live_services[region],
            depends_on=[*service.args.depends_on, *service.catalog_readers],
        ),
    )
    for region in config.regions[1:]
]

# With a domain, one global load balancer in front of every region.
door = (
    front_door.FrontDoor(
        "front-door",
        front_door.FrontDoorArgs(
            project=config.project,
            # Its keys (front_door.FrontDoorSettings), the domain among them.
            settings=config,
            services={regional.region: regional.service_name for regional in services},
            candidate_tag=CANDIDATE,
            depends_on=[apis],
        ),
    )
    if config.domain
    else None
)

pulumi.export("url", service.url)
pulumi.export("target", door.target if door else service.target)
# The ID token audience every region's service accepts, whichever URL a caller dials.
pulumi.export("audience", grpc_service.service_audience(config.project, config.service_name))
if door:
    pulumi.export("address", door.address)
    pulumi.export("certificate", door.certificate)
pulumi.export("image", service.image)
pulumi.export("serviceName", service.service_name)
pulumi.export("serviceAccount", service.service_account_email)
pulumi.export("region", service.region)
pulumi.export("regions", [regional.region for regional in services])
pulumi.export("urls", {regional.region: regional.url for regional in services})
if data:
    pulumi.export("catalogBucket", data.bucket_name)
    pulumi.export("catalogObject", data.object_name)

observed = observability.Observability(
    "observability",
    observability.ObservabilityArgs(
        project=config.project,
        service_name=config.service_name,
        unary_methods=UNARY_METHODS,
        availability_goal=objectives.availability_goal,
        latency_goal=objectives.latency_goal,
        latency_threshold_ms=objectives.latency_threshold_ms,
        slo_window_days=objectives.slo_window_days,
        min_instances=config.min_instances,
        alert_emails=objectives.alert_emails,
        notification_channels=objectives.alert_channels,
        telemetry_writer=service.service_account_email.apply(lambda email: f"serviceAccount:{email}"),
        depends_on=[apis],
    ),
)
pulumi.export("dashboardUrl", observed.dashboard_url)
# What the release gate reads: the call counter's metric type (see docs/observability.md, "Release gate").
pulumi.export("callsMetric", observed.calls_metric)
pulumi.export("latencyMetric", observed.latency_metric)
pulumi.export("revision", service.revision)
pulumi.export("stableTarget", service.stable_target)
pulumi.export("candidateTarget", service.candidate_target)
# What `python -m release` needs: `pulumi stack output release --json | python -m release promote --plan -`.
pulumi.export(
    "release",
    {
        "project": config.project,
        # The home region (pull-request revisions go there) and every region a release moves, in order.
        "region": config.region,
        "service": service.service_name,
        "steps": list(config.canary_steps),
        "pauseSeconds": config.canary_pause_seconds,
        # The error-ratio gate: the call counter it reads, the highest ratio and the fewest calls it accepts.
        "callsMetric": observed.calls_metric,
        "maxErrorRatio": config.canary_max_error_ratio,
        "minCalls": config.canary_min_calls,
        # The latency gate (None: not judged) and the wait for Monitoring's points before any gate reads them.
        "maxLatencyRatio": config.canary_max_latency_ratio,
        "maxP95Ms": config.canary_max_p95_ms,
        "maxP99Ms": config.canary_max_p99_ms,
        "ingestionDelaySeconds": config.canary_ingestion_delay_seconds,
        # Public either way: an allUsers binding, or no invoker check at all.
        "private": not (config.allow_unauthenticated or config.invoker_iam_disabled),
        "url": service.url,
        "candidateUrl": service.candidate_url,
        "regions": {
            regional.region: {"url": regional.url, "candidateUrl": regional.candidate_url}
            for regional in services
        },
        # The audience every region's service accepts, on every URL: what the release mints ID tokens for.
        "audience": grpc_service.service_audience(config.project, config.service_name),
        # With a domain the services admit only the load balancer: the release checks each region's
        # candidate through the domain, with the header that routes to it (front_door.py).
        "frontDoor": {"url": door.url, "candidateHeader": door.candidate_header} if door else None,
        "imageRepository": image.image_repository,
        # Pull-request builds push to a package of their own (container_image.PR_PACKAGE_PREFIX).
        "prImageRepository": image.pr_image_repository,
    },
)

if config.github_repository:
    ci = ci_identity.CiIdentity(
        "ci",
        ci_identity.CiIdentityArgs(
            project=config.project,
            github_repository=config.github_repository,
            github_repository_id=config.github_repository_id,
            github_repository_owner_id=config.github_repository_owner_id,
            deploy_environment=config.deploy_environment,
            pool_id=f"github-{config.ci_pool_suffix}",
            deployer_account_id=f"{config.service_name}-deployer",
            previewer_account_id=f"{config.service_name}-preview",
            runtime_service_account=service.service_account_name,
            image_repository=image.repository_id,
            image_repository_location=config.region,
            catalog_bucket=data.bucket_name if data else None,
            front_door=door is not None,
            depends_on=[apis],
            pull_requests=ci_identity.PullRequestRevisionsArgs(
                account_id=f"{config.service_name}-pr-rev",
                service_name=service.service_name,
                location=config.region,
                repository_id=config.service_name,
            )
            if config.pr_revisions
            else None,
        ),
    )
    pulumi.export("workloadIdentityProvider", ci.workload_identity_provider)
    pulumi.export("deployerServiceAccount", ci.deployer_service_account)
    pulumi.export("previewerServiceAccount", ci.previewer_service_account)
    if ci.pr_deployer_service_account is not None:
        pulumi.export("prDeployerServiceAccount", ci.pr_deployer_service_account)
    if config.ci_state_backend:
        state = ci_state.CiState(
            "ci-state",
            ci_state.CiStateArgs(
                project=config.project,
                location=config.region,
                bucket_name=f"{config.project}-pulumi-state",
                key_ring_name=f"{config.service_name}-pulumi",
                deployer_email=ci.deployer_service_account,
                previewer_email=ci.previewer_service_account,
                reader_emails=[ci.pr_deployer_service_account] if ci.pr_deployer_service_account else [],
                depends_on=[apis],
            ),
        )
        pulumi.export("stateBackendUrl", state.backend_url)
        pulumi.export("secretsProvider", state.secrets_provider)

# `pulumi up` alone ships nothing to callers: a new build starts as the candidate with no traffic. Say so
# where the person who ran it looks, with the command that releases it.
pulumi.log.info(
    "A new build is deployed as revision tagged `candidate` with 0% of the traffic; callers get it once it "
    f"is released: `pulumi stack output release --json --stack {pulumi.get_stack()} | python -m release "
    f"promote --plan -` (`make deploy STACK={pulumi.get_stack()}` runs up, the release and a smoke check)."
)
