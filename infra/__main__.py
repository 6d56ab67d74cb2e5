"""The Pulumi program: validate the config, declare the service, its observability and CI identity, export."""

import os
from pathlib import Path

import pulumi
from catalog_infra import ci_identity, grpc_service, live, observability, revisions
from catalog_infra.apis import ProjectApis
from catalog_infra.config import load, load_observability

# The Docker context is the repository root, found from this file and passed relative to the working
# directory (infra/, where Pulumi runs the program and its providers): the same in every checkout.
REPO_ROOT = Path(os.path.relpath(Path(__file__).resolve().parent.parent))
# The name the server marks SERVING only while it can answer (catalog loaded, no shutdown begun): what the
# startup probe waits for and the readiness probe watches.
HEALTH_SERVICE = "catalog.ProductCatalog"
# The catalog's unary methods: the latency SLO's (SearchProducts streams, and its duration is the stream's).
UNARY_METHODS = ("/catalog.ProductCatalog/GetProduct", "/catalog.ProductCatalog/ListProducts")

config = load()
objectives = load_observability(config)
# The traffic Cloud Run serves now: the program declares it as it is (catalog_infra/revisions.py).
live_service = live.read_service(config.project, config.region, config.service_name)
revisions.serving_routes(live_service)  # refuses a split it cannot build on, before any resource

apis = ProjectApis(
    "apis",
    project=config.project,
    apis=grpc_service.REQUIRED_APIS
    + observability.REQUIRED_APIS
    + (ci_identity.REQUIRED_APIS if config.github_repository else ()),
)

service = grpc_service.GrpcService(
    "catalog",
    grpc_service.GrpcServiceArgs(
        project=config.project,
        region=config.region,
        service_name=config.service_name,
        image=config.image
        or grpc_service.ImageBuild(
            context=REPO_ROOT, dockerfile=REPO_ROOT / "Dockerfile", tag=pulumi.get_stack()
        ),
        health_service=HEALTH_SERVICE,
        min_instances=config.min_instances,
        max_instances=config.max_instances,
        concurrency=config.concurrency,
        cpu=config.cpu,
        memory=config.memory,
        request_timeout_seconds=config.request_timeout_seconds,
        ingress=config.ingress,
        deletion_protection=config.deletion_protection,
        allow_unauthenticated=config.allow_unauthenticated,
        invokers=config.invokers,
        invoker_iam_disabled=config.invoker_iam_disabled,
        env={
            "ENABLE_REFLECTION": "true" if config.reflection else "false",
            "LOG_LEVEL": config.log_level,
        },
        keep_images=config.keep_images,
        depends_on=[apis],
        live=live_service,
    ),
)

pulumi.export("url", service.url)
pulumi.export("target", service.target)
pulumi.export("image", service.image)
pulumi.export("serviceName", service.service_name)
pulumi.export("serviceAccount", service.service_account_email)
pulumi.export("region", service.region)

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
        "region": config.region,
        "service": service.service_name,
        "steps": list(config.canary_steps),
        "pauseSeconds": config.canary_pause_seconds,
        # The error-ratio gate: the call counter it reads, the highest ratio and the fewest calls it accepts.
        "callsMetric": observed.calls_metric,
        "maxErrorRatio": config.canary_max_error_ratio,
        "minCalls": config.canary_min_calls,
        # Public either way: an allUsers binding, or no invoker check at all.
        "private": not (config.allow_unauthenticated or config.invoker_iam_disabled),
        "url": service.url,
        "candidateUrl": service.candidate_url,
        "imageRepository": service.image_repository,
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
