"""Revisions, tags and traffic as the program declares them, for a first deploy and for later ones.

The program names each revision after what it runs, tags it candidate at 0%, and otherwise declares the
split Cloud Run serves: so `pulumi up` never moves traffic, never undoes a release or a rollback, and with
nothing changed declares exactly what is live.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from tests.infra.harness import (
    PROJECT,
    SERVICE,
    Deployment,
    Mocks,
    RecordingMonitor,
    infra_module,
    recorded,
    run_program,
    stack_config,
)

BY_REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
OLD = "catalog-grpc-0ld0ld0ld0"
OLDER = "catalog-grpc-01de401de4"
# A front door; pull-request revisions (dev's) cannot live behind one, so they are off with it.
DOMAIN: dict[str, object] = {"domain": "catalog.example.com", "prRevisions": False}
PR = "catalog-grpc-pr3-12345678"


def revisions() -> Any:
    return infra_module("revisions")


def live(*routes: tuple[str, int, str], latest: str = OLD) -> Any:
    module = revisions()
    return module.LiveService(
        routes=tuple(module.LiveRoute(revision, percent, tag) for revision, percent, tag in routes),
        latest_ready_revision=latest,
    )


def service(deployment: Deployment) -> dict[str, Any]:
    inputs: dict[str, Any] = deployment.one(SERVICE).inputs
    return inputs


def split(deployment: Deployment) -> list[tuple[str, int, str]]:
    """The declared traffic as (revision, percent, tag); every target pins a revision."""
    targets = service(deployment)["traffics"]
    assert {target["type"] for target in targets} == {BY_REVISION}
    return [(t["revision"], t["percent"], t.get("tag", "")) for t in targets]


def deploy(stack: str, live_service: Any = None, **overrides: object) -> Deployment:
    """The stack with `overrides`, deployed over `live_service`; a first deploy is shared (read it only)."""
    config = {**stack_config(stack), **{f"{PROJECT}:{key}": value for key, value in overrides.items()}}
    if live_service is None:
        return recorded(stack, config=config)
    return run_program(config, stack=stack, live=live_service)


@pytest.fixture
def revision(stack: str) -> str:
    """The name the program gives this stack's revision (the same for the same build and settings)."""
    name: str = service(recorded(stack))["template"]["revision"]
    return name


def test_the_revision_is_named_after_what_it_runs(stack: str, revision: str) -> None:
    # Cloud Run's rule: the service's name and a dash first.
    assert revision.startswith("catalog-grpc-")
    assert len(revision) == len("catalog-grpc-") + 10
    # Another run of the same build and settings: the same name.
    assert service(run_program(stack_config(stack), stack=stack))["template"]["revision"] == revision
    assert service(deploy(stack, memory="2Gi"))["template"]["revision"] != revision
    assert (
        service(deploy(stack, logLevel="DEBUG" if stack == "prod" else "INFO"))["template"]["revision"]
        != revision
    )
    prebuilt = "europe-docker.pkg.dev/p/images/catalog@sha256:" + "a" * 64
    assert service(deploy(stack, image=prebuilt))["template"]["revision"] != revision


def test_service_level_settings_that_make_a_revision_change_its_name(stack: str, revision: str) -> None:
    def name(**overrides: object) -> str:
        revision_name: str = service(deploy(stack, **overrides))["template"]["revision"]
        return revision_name

    behind_balancer = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
    # A domain adds the custom audience https://DOMAIN: alone (same ingress), it is a new name.
    with_domain = name(**DOMAIN, ingress=behind_balancer)
    assert service(deploy(stack, **DOMAIN))["customAudiences"][1:] == ["https://catalog.example.com"]
    assert with_domain != name(ingress=behind_balancer)
    assert name(ingress=behind_balancer) != revision
    if stack == "prod":
        assert name(invokerIamDisabled=True) != revision
    else:
        assert name(invokerIamDisabled=False, allowUnauthenticated=True) != revision


def test_settings_outside_the_revision_keep_its_name(stack: str, revision: str) -> None:
    unrelated: dict[str, object] = {
        "canaryPauseSeconds": 600,
        "keepImages": 7,
        "alertEmails": ["oncall@example.com"],
        "canaryMaxErrorRatio": "0.5",
    }
    for key, value in unrelated.items():
        assert service(deploy(stack, **{key: value}))["template"]["revision"] == revision, key
    # The front door's own settings are the load balancer's, not the service's.
    with_domain = service(deploy(stack, **DOMAIN))["template"]["revision"]
    limited = deploy(stack, **DOMAIN, rateLimitRequests=50)
    assert service(limited)["template"]["revision"] == with_domain


def test_first_deploy_serves_the_new_revision_as_stable_and_candidate(stack: str, revision: str) -> None:
    deployment = recorded(stack)
    assert split(deployment) == [(revision, 100, "stable"), (revision, 0, "candidate")]
    assert deployment.live_reads == [(stack_config(stack)["gcp:project"], "us-central1", "catalog-grpc")]


def test_a_later_deploy_adds_the_candidate_at_zero_and_keeps_everything_else(
    stack: str, revision: str
) -> None:
    before = live((OLD, 100, "stable"), (OLD, 0, "candidate"), (OLDER, 0, "previous"), (PR, 0, "pr-3"))
    assert split(deploy(stack, before)) == [
        (OLD, 100, "stable"),
        (OLDER, 0, "previous"),
        (PR, 0, "pr-3"),
        (revision, 0, "candidate"),
    ]


def test_nothing_changed_declares_the_live_split_as_it_is(stack: str, revision: str) -> None:
    after_release = [(revision, 100, "stable"), (revision, 0, "candidate"), (OLD, 0, "previous")]
    assert split(deploy(stack, live(*after_release))) == after_release
    mid_release = [(OLD, 90, "stable"), (revision, 10, "candidate")]
    assert split(deploy(stack, live(*mid_release))) == mid_release


def test_a_rolled_back_revision_gets_no_traffic_back(stack: str, revision: str) -> None:
    rolled_back = [(OLD, 100, "stable"), (revision, 0, "candidate")]
    assert split(deploy(stack, live(*rolled_back))) == rolled_back


def test_a_new_build_during_a_release_keeps_the_old_candidates_share(stack: str, revision: str) -> None:
    mid_release = live((OLDER, 50, "stable"), (OLD, 50, "candidate"))
    assert split(deploy(stack, mid_release)) == [
        (OLDER, 50, "stable"),
        (OLD, 50, ""),
        (revision, 0, "candidate"),
    ]


def test_a_service_deployed_before_releases_is_adopted(stack: str, revision: str) -> None:
    # Today's services: all traffic on the latest revision, no tags.
    untagged = live((OLD, 100, ""), latest=OLD)
    assert split(deploy(stack, untagged)) == [(OLD, 100, "stable"), (revision, 0, "candidate")]


def test_an_untagged_split_is_refused_before_any_resource() -> None:
    monitor = RecordingMonitor(Mocks())
    with pytest.raises(pulumi.RunError, match="--set-tags stable=REVISION"):
        run_program(
            stack_config("prod"), stack="prod", monitor=monitor, live=live((OLD, 60, ""), (OLDER, 40, ""))
        )
    assert monitor.declared == []


def test_readiness_probe_asks_for_the_catalog_over_grpc(stack: str) -> None:
    container = service(recorded(stack))["template"]["containers"][0]
    probe = container["readinessProbe"]
    assert probe["grpc"] == {"port": 8080, "service": "catalog.ProductCatalog"}
    assert "httpGet" not in probe
    assert probe["timeoutSeconds"] < probe["periodSeconds"]
    assert probe["failureThreshold"] >= 2
    assert probe["successThreshold"] == 1


def test_outputs_name_both_targets_and_the_release_plan(stack: str, revision: str) -> None:
    outputs = recorded(stack).outputs
    assert outputs["revision"] == revision
    assert outputs["stableTarget"] == "stable---catalog-grpc-abc123-uc.a.run.app:443"
    assert outputs["candidateTarget"] == "candidate---catalog-grpc-abc123-uc.a.run.app:443"
    config = stack_config(stack)
    assert outputs["release"] == {
        "project": config["gcp:project"],
        "region": "us-central1",
        "service": "catalog-grpc",
        "steps": config[f"{PROJECT}:canarySteps"],
        "pauseSeconds": config[f"{PROJECT}:canaryPauseSeconds"],
        "callsMetric": "workload.googleapis.com/catalog.server.calls",
        "maxErrorRatio": float(str(config.get(f"{PROJECT}:canaryMaxErrorRatio", "0.01"))),
        "minCalls": config.get(f"{PROJECT}:canaryMinCalls", 20),
        "maxLatencyRatio": 1.5,
        "maxP95Ms": 0,
        "maxP99Ms": 0,
        "ingestionDelaySeconds": 120,
        # dev is public through invokerIamDisabled, prod private.
        "private": stack == "prod",
        "url": "https://catalog-grpc-abc123-uc.a.run.app",
        "candidateUrl": "https://candidate---catalog-grpc-abc123-uc.a.run.app",
        "regions": {
            "us-central1": {
                "url": "https://catalog-grpc-abc123-uc.a.run.app",
                "candidateUrl": "https://candidate---catalog-grpc-abc123-uc.a.run.app",
            }
        },
        # The custom audience every region's service accepts on every URL.
        "audience": f"//run.googleapis.com/projects/{config['gcp:project']}/services/catalog-grpc",
        "frontDoor": None,
        "imageRepository": f"us-central1-docker.pkg.dev/{config['gcp:project']}/catalog-grpc/catalog-grpc",
        "prImageRepository": (
            f"us-central1-docker.pkg.dev/{config['gcp:project']}/catalog-grpc/pr-catalog-grpc"
        ),
    }


def test_dev_releases_at_once_and_prod_in_steps() -> None:
    assert stack_config("dev")[f"{PROJECT}:canarySteps"] == [100]
    prod = stack_config("prod")[f"{PROJECT}:canarySteps"]
    assert isinstance(prod, list)
    assert len(prod) >= 2
    assert prod[-1] == 100


INVALID: list[tuple[str, object, str]] = [
    ("canarySteps", [50, 10, 100], "increasing percentages"),
    ("canarySteps", [10, 50], "ends at 100"),
    ("canarySteps", [0, 100], "from 1 to 100"),
    ("canarySteps", [], "increasing percentages"),
    ("canarySteps", "ten", "increasing percentages"),
    ("canaryPauseSeconds", -1, "from 0 to 3600"),
    ("canaryPauseSeconds", 3601, "from 0 to 3600"),
    ("canaryMaxErrorRatio", "1%", "a share from 0 to 1"),
    ("canaryMaxErrorRatio", "1.5", "a share from 0 to 1"),
    ("canaryMinCalls", -1, "from 0 to 1000000"),
    ("canaryMinCalls", "many", "from 0 to 1000000"),
    ("prRevisions", "yes", "true or false"),
]


@pytest.mark.parametrize(("key", "value", "allowed"), INVALID, ids=[f"{k}={v}" for k, v, _ in INVALID])
def test_invalid_release_config_fails_before_any_resource(key: str, value: object, allowed: str) -> None:
    monitor = RecordingMonitor(Mocks())
    config = {"gcp:project": "my-gcp-project-dev", f"{PROJECT}:{key}": value}
    with pytest.raises(pulumi.RunError) as failure:
        run_program(config, monitor=monitor)
    assert f"{PROJECT}:{key}" in str(failure.value)
    assert allowed in str(failure.value)
    assert monitor.declared == []


def test_pr_revisions_need_a_repository() -> None:
    with pytest.raises(pulumi.RunError, match="needs githubRepository"):
        run_program({"gcp:project": "my-gcp-project-dev", f"{PROJECT}:prRevisions": True})


def test_the_service_urn_the_deploy_jobs_refresh(stack: str) -> None:
    # docs/releases.md: CI refreshes this one resource before `pulumi up`.
    assert recorded(stack).one(SERVICE).urn == (
        f"urn:pulumi:{stack}::catalog-grpc::catalog:index:GrpcService$gcp:cloudrunv2/service:Service::catalog-service"
    )


# A stack in two regions: each region's service is declared over that region's own live traffic.
REGIONS = {"regions": ["us-central1", "europe-west1"], "minInstances": 1}


def regional_revision(deployment: Deployment) -> str:
    """The revision the home region's service deploys (minInstances 1 names another than the default's)."""
    home = next(d for d in deployment.all(SERVICE) if d.name == "catalog-service")
    name: str = home.inputs["template"]["revision"]
    return name


def by_region(deployment: Deployment) -> dict[str, list[tuple[str, int, str]]]:
    """Each region's declared split, as (revision, percent, tag)."""
    splits = {}
    for declared in deployment.all(SERVICE):
        targets = declared.inputs["traffics"]
        assert {target["type"] for target in targets} == {BY_REVISION}
        splits[declared.inputs["location"]] = [
            (t["revision"], t["percent"], t.get("tag", "")) for t in targets
        ]
    return splits


def test_every_region_gets_the_same_revision_tags_and_readiness(stack: str) -> None:
    deployment = deploy(stack, None, **REGIONS)
    revision = regional_revision(deployment)
    project = stack_config(stack)["gcp:project"]
    assert deployment.live_reads == [
        (project, "us-central1", "catalog-grpc"),
        (project, "europe-west1", "catalog-grpc"),
    ]
    services = deployment.all(SERVICE)
    assert sorted(s.name for s in services) == ["catalog-europe-west1-service", "catalog-service"]
    for declared in services:
        template = declared.inputs["template"]
        # The same image and settings make the same name: one revision name for the release in every region.
        assert template["revision"] == revision
        assert template["containers"][0]["readinessProbe"]["grpc"]["service"] == "catalog.ProductCatalog"
    assert by_region(deployment) == {
        region: [(revision, 100, "stable"), (revision, 0, "candidate")]
        for region in ("us-central1", "europe-west1")
    }


def test_each_region_keeps_its_own_live_split(stack: str) -> None:
    # us-central1 is mid-release of OLD; europe-west1 completed it; asia-east1 is new to the stack.
    regions = {"regions": ["us-central1", "europe-west1", "asia-east1"], "minInstances": 1}
    live_by_region = {
        "us-central1": live((OLDER, 90, "stable"), (OLD, 10, "candidate")),
        "europe-west1": live((OLD, 100, "stable"), (OLD, 0, "candidate"), (OLDER, 0, "previous")),
    }
    deployment = deploy(stack, live_by_region, **regions)
    revision = regional_revision(deployment)
    assert by_region(deployment) == {
        "us-central1": [(OLDER, 90, "stable"), (OLD, 10, ""), (revision, 0, "candidate")],
        "europe-west1": [(OLD, 100, "stable"), (OLDER, 0, "previous"), (revision, 0, "candidate")],
        "asia-east1": [(revision, 100, "stable"), (revision, 0, "candidate")],
    }


def test_the_release_plan_lists_every_region(stack: str) -> None:
    plan = deploy(stack, None, **REGIONS).outputs["release"]
    assert plan["region"] == "us-central1"
    assert plan["service"] == "catalog-grpc"
    assert plan["regions"] == {
        "us-central1": {
            "url": "https://catalog-grpc-abc123-uc.a.run.app",
            "candidateUrl": "https://candidate---catalog-grpc-abc123-uc.a.run.app",
        },
        # The mocks give every region's service the same URL; Cloud Run's carry the region.
        "europe-west1": {
            "url": "https://catalog-grpc-abc123-uc.a.run.app",
            "candidateUrl": "https://candidate---catalog-grpc-abc123-uc.a.run.app",
        },
    }
    assert (
        plan["audience"]
        == f"//run.googleapis.com/projects/{stack_config(stack)['gcp:project']}/services/catalog-grpc"
    )
    assert plan["frontDoor"] is None


def test_with_a_front_door_the_plan_routes_the_release_through_it(stack: str) -> None:
    plan = deploy(stack, None, **DOMAIN, **REGIONS).outputs["release"]
    assert plan["audience"].endswith("/services/catalog-grpc")
    assert plan["frontDoor"] == {
        "url": "https://catalog.example.com",
        "candidateHeader": "x-catalog-candidate",
    }
    assert list(plan["regions"]) == ["us-central1", "europe-west1"]


def test_a_bad_split_in_any_region_is_refused_before_any_resource() -> None:
    monitor = RecordingMonitor(Mocks())
    live_by_region = {"europe-west1": live((OLD, 60, ""), (OLDER, 40, ""))}
    with pytest.raises(pulumi.RunError, match="--set-tags stable=REVISION"):
        run_program(
            {**stack_config("prod"), **{f"{PROJECT}:{k}": v for k, v in REGIONS.items()}},
            stack="prod",
            monitor=monitor,
            live=live_by_region,
        )
    assert monitor.declared == []
