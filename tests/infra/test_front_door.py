"""Several regions and a front door: every resource, every link between them, and the config they refuse.

The committed stacks have neither: they must declare what they did before (the same URNs, or aliases of
them), and nothing of the load balancer.
"""

from __future__ import annotations

import pulumi
import pytest
from catalog_infra import container_image, front_door

from tests.infra.harness import (
    ACCOUNT,
    ADDRESS,
    API,
    BACKEND,
    CERTIFICATE,
    FORWARDING_RULE,
    GLOBAL_ADDRESS,
    HTTPS_PROXY,
    IMAGE,
    INVOKER,
    NEG,
    PROJECT,
    REPOSITORY,
    SECURITY_POLICY,
    SERVICE,
    SLEEP,
    STACKS,
    URL_MAP,
    Declared,
    Deployment,
    Mocks,
    RecordingMonitor,
    recorded,
    run_program,
    stack_config,
)

LB_TYPES = (NEG, BACKEND, URL_MAP, CERTIFICATE, HTTPS_PROXY, GLOBAL_ADDRESS, FORWARDING_RULE, SECURITY_POLICY)
DOMAIN = "catalog.example.com"
REGIONS = ["us-central1", "europe-west1", "asia-northeast1"]
DENIED = [f"198.51.100.{n}/32" for n in range(12)] + ["2001:db8::/32"]
INVOKERS = ["group:catalog-clients@example.com"]
# The custom audience every service accepts in every region, whatever URL is dialled.
AUDIENCE = "//run.googleapis.com/projects/{project}/services/catalog-grpc"
PROD_AUDIENCE = AUDIENCE.format(project="my-gcp-project-prod")

# What the committed stacks declared before the front door (the program as of dfca95d, under these mocks),
# after "urn:pulumi:STACK::catalog-grpc::". Each must still be declared, or be an alias of what is.
_SHARED_URNS = [
    "catalog:index:CiIdentity$gcp:iam/workloadIdentityPool:WorkloadIdentityPool::ci-pool",
    "catalog:index:CiIdentity$gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider::ci-provider",
    "catalog:index:CiIdentity$gcp:projects/iAMMember:IAMMember::ci-deployer-run-admin",
    "catalog:index:CiIdentity$gcp:projects/iAMMember:IAMMember::ci-deployer-serviceusage-serviceUsageAdmin",
    "catalog:index:CiIdentity$gcp:projects/iAMMember:IAMMember::ci-previewer-artifactregistry-reader",
    "catalog:index:CiIdentity$gcp:projects/iAMMember:IAMMember::ci-previewer-run-viewer",
    "catalog:index:CiIdentity$gcp:projects/iAMMember:IAMMember::ci-previewer-serviceusage-serviceUsageViewer",
    "catalog:index:CiIdentity$gcp:serviceaccount/account:Account::ci-deployer",
    "catalog:index:CiIdentity$gcp:serviceaccount/account:Account::ci-previewer",
    "catalog:index:CiIdentity$gcp:serviceaccount/iAMMember:IAMMember::ci-deployer-acts-as-runtime",
    "catalog:index:CiIdentity$gcp:serviceaccount/iAMMember:IAMMember::ci-repository-impersonates-previewer",
    "catalog:index:GrpcService$docker-build:index:Image::catalog-image",
    "catalog:index:GrpcService$gcp:artifactregistry/repository:Repository::catalog-repo",
    "catalog:index:GrpcService$gcp:cloudrunv2/service:Service::catalog-service",
    "catalog:index:GrpcService$gcp:serviceaccount/account:Account::catalog-sa",
    "catalog:index:ProjectApis$gcp:projects/service:Service::apis-artifactregistry",
    "catalog:index:ProjectApis$gcp:projects/service:Service::apis-cloudresourcemanager",
    "catalog:index:ProjectApis$gcp:projects/service:Service::apis-iam",
    "catalog:index:ProjectApis$gcp:projects/service:Service::apis-iamcredentials",
    "catalog:index:ProjectApis$gcp:projects/service:Service::apis-run",
    "catalog:index:ProjectApis$gcp:projects/service:Service::apis-serviceusage",
    "catalog:index:ProjectApis$gcp:projects/service:Service::apis-sts",
    "catalog:index:ProjectApis$time:index/sleep:Sleep::apis-propagation",
    "pulumi:pulumi:Stack$catalog:index:CiIdentity::ci",
    "pulumi:pulumi:Stack$catalog:index:GrpcService::catalog",
    "pulumi:pulumi:Stack$catalog:index:ProjectApis::apis",
]
FORMER_URNS = {
    "dev": [
        *_SHARED_URNS,
        "catalog:index:CiIdentity$gcp:serviceaccount/iAMMember:IAMMember::ci-main-impersonates-deployer",
    ],
    "prod": [
        *_SHARED_URNS,
        "catalog:index:CiIdentity$gcp:serviceaccount/iAMMember:IAMMember::ci-production-impersonates-deployer",
    ],
}


def edge_config(**overrides: object) -> dict[str, object]:
    """prod, served from three regions behind a domain, with a deny list and callers."""
    settings: dict[str, object] = {
        "regions": REGIONS,
        "domain": DOMAIN,
        "deniedIpRanges": DENIED,
        "rateLimitRequests": 1200,
        "rateLimitIntervalSeconds": 60,
        "banDurationSeconds": 300,
        "invokers": INVOKERS,
        **overrides,
    }
    return {**stack_config("prod"), **{f"{PROJECT}:{key}": value for key, value in settings.items()}}


@pytest.fixture(scope="module")
def edge() -> Deployment:
    return run_program(edge_config(), stack="prod")


def by_location(deployment: Deployment) -> dict[str, Declared]:
    return {service.inputs["location"]: service for service in deployment.all(SERVICE)}


def by_id(deployment: Deployment, type_: str) -> dict[str, Declared]:
    return {resource.id: resource for resource in deployment.all(type_)}


# The committed stacks: one region, no load balancer, nothing replaced.


@pytest.mark.parametrize("stack", STACKS)
def test_committed_stacks_keep_every_urn(stack: str) -> None:
    deployment = recorded(stack)
    prefix = f"urn:pulumi:{stack}::{PROJECT}::"
    claimed: dict[str, list[str]] = {}
    for resource in deployment.declared:
        for urn in (resource.urn, *resource.aliases):
            claimed.setdefault(urn, []).append(resource.name)
    for former in FORMER_URNS[stack]:
        assert len(claimed.get(prefix + former, [])) == 1, former
    # Only the registry and the image moved out of GrpcService (to ContainerImage), and both say where from.
    # (pulumi-gcp adds aliases of its own, for types it renamed: those keep the parent.)
    former_parent = f"{prefix}catalog:index:GrpcService$"
    moved = {
        r.name: r
        for r in deployment.declared
        if "GrpcService" not in r.parent and any(a.startswith(former_parent) for a in r.aliases)
    }
    assert set(moved) == {"catalog-repo", "catalog-image"}
    for resource in moved.values():
        assert resource.parent == f"{prefix}pulumi:pulumi:Stack$catalog:index:ContainerImage::catalog"
        assert f"{former_parent}{resource.type}::{resource.name}" in resource.aliases


@pytest.mark.parametrize("stack", STACKS)
def test_committed_stacks_have_no_front_door(stack: str) -> None:
    deployment = recorded(stack)
    for type_ in LB_TYPES:
        assert deployment.all(type_) == [], type_
    assert "compute.googleapis.com" not in {api.inputs["service"] for api in deployment.all(API)}
    service = deployment.one(SERVICE).inputs
    assert service["location"] == "us-central1"
    assert service["ingress"] == "INGRESS_TRAFFIC_ALL"
    assert service["customAudiences"] == [AUDIENCE.format(project=stack_config(stack)["gcp:project"])]
    outputs = deployment.outputs
    assert outputs["target"] == "catalog-grpc-abc123-uc.a.run.app:443"
    assert outputs["regions"] == ["us-central1"]
    assert outputs["urls"] == {"us-central1": "https://catalog-grpc-abc123-uc.a.run.app"}
    assert not {"address", "certificate"} & set(outputs)


# Three regions behind a domain.


def test_one_service_per_region_with_the_same_image_and_settings(edge: Deployment) -> None:
    services = by_location(edge)
    assert sorted(services) == sorted(REGIONS)
    home = services["us-central1"]
    # The home region keeps the single-region names; the others carry their region.
    assert home.name == "catalog-service"
    assert services["europe-west1"].name == "catalog-europe-west1-service"
    assert services["asia-northeast1"].name == "catalog-asia-northeast1-service"
    for region, service in services.items():
        assert service.inputs["name"] == "catalog-grpc", region
        # Same image (by digest), probes, scaling, account: the whole template is the same.
        assert service.inputs["template"] == home.inputs["template"], region
        assert service.inputs["template"]["containers"][0]["image"].endswith("@sha256:" + "d" * 64)
    # One account for all of them, one registry, one build.
    assert [account.name for account in edge.all(ACCOUNT) if account.name.startswith("catalog")] == [
        "catalog-sa"
    ]
    assert len(edge.all(REPOSITORY)) == 1
    assert edge.one(REPOSITORY).inputs["location"] == "us-central1"
    assert len(edge.all(IMAGE)) == 1


def test_every_region_keeps_a_warm_instance(edge: Deployment) -> None:
    for region, service in by_location(edge).items():
        assert service.inputs["template"]["scaling"]["minInstanceCount"] >= 1, region


def test_services_admit_only_the_load_balancer_and_accept_the_domains_tokens(edge: Deployment) -> None:
    for region, service in by_location(edge).items():
        assert service.inputs["ingress"] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", region
        assert service.inputs["customAudiences"] == [PROD_AUDIENCE, f"https://{DOMAIN}"], region
        assert service.inputs["invokerIamDisabled"] is False


def test_invokers_are_granted_in_every_region(edge: Deployment) -> None:
    bindings = {(b.inputs["location"], b.inputs["member"]) for b in edge.all(INVOKER)}
    assert bindings == {(region, member) for region in REGIONS for member in INVOKERS}


def serving_groups(deployment: Deployment) -> list[Declared]:
    return [group for group in deployment.all(NEG) if "tag" not in group.inputs["cloudRun"]]


def candidate_groups(deployment: Deployment) -> list[Declared]:
    return [group for group in deployment.all(NEG) if "tag" in group.inputs["cloudRun"]]


def serving_backend(deployment: Deployment) -> Declared:
    (backend,) = [b for b in deployment.all(BACKEND) if b.name == "front-door-backend"]
    return backend


def test_a_serverless_neg_per_region_for_that_regions_service(edge: Deployment) -> None:
    services = by_location(edge)
    groups = serving_groups(edge)
    assert sorted(group.inputs["region"] for group in groups) == sorted(REGIONS)
    for group in groups:
        region = group.inputs["region"]
        assert group.inputs["networkEndpointType"] == "SERVERLESS"
        # Service health refuses URL masks and tags: the NEG names the service and nothing else.
        assert group.inputs["cloudRun"] == {"service": "catalog-grpc"}
        assert services[region].urn in group.dependencies, region
        assert group.name == f"front-door-neg-{region}"


def test_the_backend_speaks_http2_to_every_neg_through_cloud_armor(edge: Deployment) -> None:
    backend = serving_backend(edge)
    assert backend.inputs["loadBalancingScheme"] == "EXTERNAL_MANAGED"
    assert backend.inputs["protocol"] == "HTTP2"
    groups = serving_groups(edge)
    assert sorted(b["group"] for b in backend.inputs["backends"]) == sorted(g.id for g in groups)
    assert {g.urn for g in groups} <= set(backend.dependencies)
    policy = edge.one(SECURITY_POLICY)
    assert backend.inputs["securityPolicy"] == policy.id
    assert policy.urn in backend.dependencies
    assert backend.inputs["logConfig"] == {"enable": True, "sampleRate": 1.0}
    # Serverless NEGs take no health checks; failover is Cloud Run's service health.
    assert "healthChecks" not in backend.inputs


def test_each_regions_candidate_is_reached_only_with_the_release_header(edge: Deployment) -> None:
    backends = by_id(edge, BACKEND)
    groups = by_id(edge, NEG)
    url_map = edge.one(URL_MAP)
    (matcher,) = url_map.inputs["pathMatchers"]
    assert url_map.inputs["hostRules"] == [{"hosts": ["*"], "pathMatcher": matcher["name"]}]
    assert matcher["defaultService"] == serving_backend(edge).id
    routed = {}
    for rule in matcher["routeRules"]:
        (match,) = rule["matchRules"]
        (header,) = match["headerMatches"]
        assert header["headerName"] == "x-catalog-candidate"
        candidate = backends[rule["service"]]
        assert candidate.inputs["securityPolicy"] == edge.one(SECURITY_POLICY).id
        (group,) = [groups[b["group"]] for b in candidate.inputs["backends"]]
        assert group.inputs["cloudRun"] == {"service": "catalog-grpc", "tag": "candidate"}
        routed[header["exactMatch"]] = group.inputs["region"]
    # Each region's header value routes to that region's candidate, and only those values do.
    assert routed == {region: region for region in REGIONS}
    assert sorted(g.inputs["region"] for g in candidate_groups(edge)) == sorted(REGIONS)


def test_url_map_proxy_certificate_address_and_forwarding_rule_chain_up(edge: Deployment) -> None:
    backend, url_map = serving_backend(edge), edge.one(URL_MAP)
    certificate, proxy = edge.one(CERTIFICATE), edge.one(HTTPS_PROXY)
    address, rule = edge.one(GLOBAL_ADDRESS), edge.one(FORWARDING_RULE)
    assert url_map.inputs["defaultService"] == backend.id
    assert certificate.inputs["managed"] == {"domains": [DOMAIN]}
    assert proxy.inputs["urlMap"] == url_map.id
    assert proxy.inputs["sslCertificates"] == [certificate.id]
    assert address.inputs["addressType"] == "EXTERNAL"
    assert address.inputs["ipVersion"] == "IPV4"
    assert rule.inputs["loadBalancingScheme"] == "EXTERNAL_MANAGED"
    assert rule.inputs["portRange"] == "443"
    assert rule.inputs["ipProtocol"] == "TCP"
    assert rule.inputs["ipAddress"] == address.id
    assert rule.inputs["target"] == proxy.id
    for resource, needs in ((url_map, backend), (proxy, url_map), (proxy, certificate), (rule, proxy)):
        assert needs.urn in resource.dependencies, (resource.name, needs.name)


def test_cloud_armor_denies_the_list_then_bans_by_client_ip_and_runs_no_waf(edge: Deployment) -> None:
    policy = edge.one(SECURITY_POLICY).inputs
    assert policy["type"] == "CLOUD_ARMOR"
    rules = sorted(policy["rules"], key=lambda rule: rule["priority"])
    deny, rate, default = rules[:-2], rules[-2], rules[-1]
    # 13 ranges: two rules, each within Cloud Armor's 10 ranges per match.
    assert [len(rule["match"]["config"]["srcIpRanges"]) for rule in deny] == [10, 3]
    assert [r for rule in deny for r in rule["match"]["config"]["srcIpRanges"]] == DENIED
    assert {rule["action"] for rule in deny} == {"deny(403)"}
    assert rate["action"] == "rate_based_ban"
    assert rate["match"] == {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": ["*"]}}
    assert rate["rateLimitOptions"] == {
        "enforceOnKey": "IP",
        "conformAction": "allow",
        "exceedAction": "deny(429)",
        "rateLimitThreshold": {"count": 1200, "intervalSec": 60},
        "banDurationSec": 300,
    }
    assert default["priority"] == 2147483647
    assert default["action"] == "allow"
    assert default["match"]["config"]["srcIpRanges"] == ["*"]
    # No preconfigured WAF: it would read binary protobuf bodies as text.
    assert all("preconfiguredWafConfig" not in rule for rule in rules)
    assert "evaluatePreconfigured" not in str(rules)


def test_without_a_deny_list_the_policy_has_the_ban_and_the_default_only(edge: Deployment) -> None:
    deployment = run_program(edge_config(deniedIpRanges=[]), stack="prod")
    rules = deployment.one(SECURITY_POLICY).inputs["rules"]
    assert sorted(rule["priority"] for rule in rules) == [2000, 2147483647]


def test_front_door_lives_in_its_component_and_waits_for_the_compute_api(edge: Deployment) -> None:
    apis = {api.inputs["service"]: api.urn for api in edge.all(API)}
    assert "compute.googleapis.com" in apis
    sleep = edge.one(SLEEP)
    component = next(r for r in edge.declared if r.type == "catalog:index:FrontDoor")
    assert component.name == "front-door"
    for type_ in LB_TYPES:
        for resource in edge.all(type_):
            assert resource.parent == component.urn, resource.name
            assert sleep.urn in resource.dependencies, resource.name


def test_outputs_name_the_domain_its_audience_and_address(edge: Deployment) -> None:
    outputs = edge.outputs
    assert outputs["target"] == f"{DOMAIN}:443"
    assert outputs["audience"] == PROD_AUDIENCE
    assert outputs["release"]["frontDoor"] == {
        "url": f"https://{DOMAIN}",
        "candidateHeader": "x-catalog-candidate",
    }
    assert outputs["address"] == ADDRESS
    assert outputs["certificate"] == "front-door-cert-1a2b3c4"
    assert outputs["regions"] == REGIONS
    assert set(outputs["urls"]) == set(REGIONS)
    assert outputs["region"] == "us-central1"


def test_one_region_behind_a_domain() -> None:
    deployment = run_program(edge_config(regions=[], minInstances=0), stack="prod")
    assert [group.inputs["region"] for group in serving_groups(deployment)] == ["us-central1"]
    assert deployment.one(SERVICE).inputs["ingress"] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
    assert deployment.outputs["target"] == f"{DOMAIN}:443"


def test_an_explicit_ingress_wins_over_the_front_doors() -> None:
    deployment = run_program(edge_config(ingress="INGRESS_TRAFFIC_ALL"), stack="prod")
    assert {s.inputs["ingress"] for s in deployment.all(SERVICE)} == {"INGRESS_TRAFFIC_ALL"}


def test_several_regions_without_a_domain_run_without_a_load_balancer() -> None:
    deployment = run_program(edge_config(domain="", deniedIpRanges=[]), stack="prod")
    assert sorted(by_location(deployment)) == sorted(REGIONS)
    for type_ in LB_TYPES:
        assert deployment.all(type_) == [], type_
    assert all(s.inputs["customAudiences"] == [PROD_AUDIENCE] for s in deployment.all(SERVICE))
    assert deployment.outputs["target"] == "catalog-grpc-abc123-uc.a.run.app:443"


# Refused before any resource, naming the key.

INVALID: list[tuple[str, object, dict[str, object], str]] = [
    ("regions", ["us-central1", "moon-base1"], {}, "Cloud Run region"),
    ("regions", ["us-central1", "US-EAST1"], {}, "Cloud Run region"),
    ("regions", ["us-central1", "europe-west1", "europe-west1"], {}, "must not repeat"),
    ("regions", ["europe-west1", "asia-east1"], {}, "must include gcp:region (us-central1)"),
    ("regions", "us-central1", {}, "list of strings"),
    ("minInstances", 0, {"regions": REGIONS}, "at least 1 with several regions"),
    ("domain", "catalog", {}, "DNS name"),
    ("domain", "Catalog.Example.com", {}, "DNS name"),
    ("domain", "*.example.com", {}, "no wildcard"),
    ("domain", "catalog.example.com.", {}, "DNS name"),
    ("domain", "https://catalog.example.com", {}, "DNS name"),
    ("domain", "-bad.example.com", {}, "DNS name"),
    ("domain", "a" * 64 + ".example.com", {}, "DNS name"),
    ("rateLimitRequests", 0, {}, "from 1 to 10000"),
    ("rateLimitRequests", 10001, {}, "from 1 to 10000"),
    ("rateLimitRequests", "lots", {}, "integer"),
    ("rateLimitIntervalSeconds", 45, {}, "one of 10, 30, 60"),
    ("rateLimitIntervalSeconds", 7200, {}, "from 10 to 3600"),
    ("banDurationSeconds", 30, {}, "from 60 to 3600"),
    ("banDurationSeconds", 90, {}, "one of 60, 120"),
    ("deniedIpRanges", ["10.0.0.0/33"], {"domain": DOMAIN}, "CIDR"),
    ("deniedIpRanges", ["10.0.0.1/24"], {"domain": DOMAIN}, "CIDR"),
    ("deniedIpRanges", ["10.0.0.0/8", "10.0.0.0/8"], {"domain": DOMAIN}, "must not repeat"),
    ("deniedIpRanges", [f"10.0.{n}.0/24" for n in range(101)], {"domain": DOMAIN}, "at most 100"),
    # Load balancer settings without a load balancer.
    ("deniedIpRanges", ["203.0.113.0/24"], {}, f"needs {PROJECT}:domain"),
    ("ingress", "INGRESS_TRAFFIC_INTERNAL_ONLY", {"domain": DOMAIN}, "external load balancer"),
    (
        "prRevisions",
        True,
        {"domain": DOMAIN, "githubRepository": "o/r", "githubRepositoryId": 1, "githubRepositoryOwnerId": 2},
        "tag URL would refuse every call",
    ),
    ("ingress", "public", {}, "or empty"),
]


@pytest.mark.parametrize(
    ("key", "value", "others", "allowed"),
    INVALID,
    ids=[f"{key}={str(value)[:40]}" for key, value, _, _ in INVALID],
)
def test_bad_front_door_config_is_refused_before_any_resource(
    key: str, value: object, others: dict[str, object], allowed: str
) -> None:
    config = {
        "gcp:project": "my-gcp-project-dev",
        **{f"{PROJECT}:{k}": v for k, v in {**others, key: value}.items()},
    }
    monitor = RecordingMonitor(Mocks())
    with pytest.raises(pulumi.RunError) as failure:
        run_program(config, monitor=monitor)
    message = str(failure.value)
    assert f"{PROJECT}:{key}" in message
    assert allowed in message
    assert monitor.declared == []


# The components on their own.


def test_container_image_deploys_a_prebuilt_image_as_is() -> None:
    prebuilt = "europe-west1-docker.pkg.dev/other-project-1/images/orders@sha256:" + "b" * 64
    args = container_image.ContainerImageArgs(
        project="other-project-1",
        region="europe-west1",
        repository_id="orders",
        image=prebuilt,
        keep_images=3,
    )
    deployment = run_program({}, program=lambda: container_image.ContainerImage("orders", args))
    repository = deployment.one(REPOSITORY).inputs
    assert repository["repositoryId"] == "orders"
    assert repository["location"] == "europe-west1"
    assert repository["cleanupPolicies"][0]["mostRecentVersions"] == {
        "packageNamePrefixes": ["orders"],
        "keepCount": 3,
    }
    assert deployment.all(IMAGE) == []


def test_front_door_needs_a_service() -> None:
    args = front_door.FrontDoorArgs(
        project="p-123456",
        domain=DOMAIN,
        services={},
        candidate_tag="candidate",
        rate_limit_requests=10,
        rate_limit_interval_seconds=60,
        ban_duration_seconds=60,
    )
    with pytest.raises(ValueError, match="at least one region"):
        run_program({}, program=lambda: front_door.FrontDoor("door", args))
