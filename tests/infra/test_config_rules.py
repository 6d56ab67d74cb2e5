"""The rules that join config keys (config.py's check_* functions), each at its edge, and their refusals word
for word: a refusal is the user's only guide to what to set instead.

Read the way load() reads them, without running the program (test_config.py's `read`); the program tests
show that a refusal comes before any resource.
"""

from __future__ import annotations

import pytest
from catalog_infra import config

from contract.cloudrun import MI, WHOLE_CPU_MEMORY, format_bytes, memory_range, parse_cpu
from tests.infra.harness import PROJECT
from tests.infra.test_config import read

DOMAIN = "catalog.example.com"
# A repository with its ids, which prRevisions and ciStateBackend need.
GITHUB: dict[str, object] = {
    "githubRepository": "acme/catalog",
    "githubRepositoryId": 1,
    "githubRepositoryOwnerId": 2,
}


def refusal(**overrides: object) -> str:
    """The refusal of the config with `overrides`, as the user reads it."""
    with pytest.raises(config.ConfigError) as failure:
        read(**overrides)
    return str(failure.value)


# ---- catalogFile: a path inside the repository ----

CATALOG_FILE_REFUSAL = (
    "must be a file's path relative to the repository root, inside it, with / separators "
    "(e.g. data/catalog.json)"
)
# One path for each way out of the repository (or into a folder), each refused on its own.
OUTSIDE = ["/etc/catalog.json", "../catalog.json", "data/../../x.json", "data/", "data\\catalog.json"]
# Paths that only look like those: names with dots in them.
INSIDE = ["catalog.json", "data/catalog.json", "data/..json", "data/v1..v2.json", "data/.hidden.json"]


@pytest.mark.parametrize("path", OUTSIDE)
def test_a_catalog_file_outside_the_repository_is_refused(path: str) -> None:
    assert refusal(catalogFile=path) == (
        f"invalid config {PROJECT}:catalogFile = {path!r}: {CATALOG_FILE_REFUSAL}"
    )


@pytest.mark.parametrize("path", INSIDE)
def test_a_catalog_file_inside_the_repository_is_taken_as_written(path: str) -> None:
    assert read(catalogFile=path)["catalog_file"] == path


# ---- regions: the home region first, a warm instance in each of several ----


def test_regions_without_the_home_region_are_refused() -> None:
    assert refusal(regions=["europe-west1", "asia-east1"]) == (
        f"invalid config {PROJECT}:regions = ['europe-west1', 'asia-east1']: must include gcp:region "
        "(us-central1): the registry lives there, and its service keeps the names a single-region stack has"
    )


@pytest.mark.parametrize(
    ("listed", "regions"),
    [
        ([], ("us-central1",)),
        (["us-central1"], ("us-central1",)),
        (["us-central1", "europe-west1"], ("us-central1", "europe-west1")),
        (["europe-west1", "us-central1", "asia-east1"], ("us-central1", "europe-west1", "asia-east1")),
        (["asia-east1", "europe-west1", "us-central1"], ("us-central1", "asia-east1", "europe-west1")),
    ],
)
def test_the_home_region_goes_first_and_the_others_keep_their_order(
    listed: list[str], regions: tuple[str, ...]
) -> None:
    assert read(regions=listed, minInstances=1)["regions"] == regions


@pytest.mark.parametrize(
    ("listed", "min_instances", "accepted"),
    [
        (["us-central1"], 0, True),  # one region may scale to zero
        (["us-central1", "europe-west1"], 0, False),
        (["us-central1", "europe-west1"], 1, True),
        (["us-central1", "europe-west1"], 2, True),
    ],
)
def test_several_regions_need_a_warm_instance_in_each(
    listed: list[str], min_instances: int, accepted: bool
) -> None:
    if accepted:
        assert read(regions=listed, minInstances=min_instances)["min_instances"] == min_instances
        return
    assert refusal(regions=listed, minInstances=min_instances) == (
        f"invalid config {PROJECT}:minInstances = 0: must be at least 1 with several regions "
        "(us-central1, europe-west1): failover needs a warm instance in each region"
    )


# ---- the front door: a domain for denied ranges, an ingress that lets the load balancer in ----


def test_denied_ranges_without_a_domain_are_refused() -> None:
    assert refusal(deniedIpRanges=["203.0.113.0/24"]) == (
        f"invalid config {PROJECT}:deniedIpRanges = ['203.0.113.0/24']: needs {PROJECT}:domain: the ranges "
        "are denied by the load balancer's Cloud Armor policy, and there is no load balancer without a domain"
    )


def test_denied_ranges_with_a_domain_are_taken() -> None:
    assert read(domain=DOMAIN, deniedIpRanges=["203.0.113.0/24"])["denied_ip_ranges"] == ("203.0.113.0/24",)


def test_an_internal_only_ingress_is_refused_behind_a_domain() -> None:
    assert refusal(domain=DOMAIN, ingress="INGRESS_TRAFFIC_INTERNAL_ONLY") == (
        f"invalid config {PROJECT}:ingress = 'INGRESS_TRAFFIC_INTERNAL_ONLY': refuses the external load "
        f"balancer that {PROJECT}:domain = '{DOMAIN}' puts in front: use "
        "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER (or leave ingress empty)"
    )


def test_pull_request_revisions_are_refused_behind_a_domain() -> None:
    assert refusal(domain=DOMAIN, prRevisions=True, **GITHUB) == (
        f"invalid config {PROJECT}:prRevisions = True: cannot be combined with {PROJECT}:domain = "
        f"'{DOMAIN}': behind the front door the services admit only the load balancer, so a pull "
        "request's tag URL would refuse every call; keep pull-request revisions on a stack without a domain "
        "(dev), or turn them off here"
    )


# Every ingress with and without a domain, but the one refused above.
SET_INGRESS = [
    (domain, ingress)
    for domain in ("", DOMAIN)
    for ingress in config.INGRESS_VALUES
    if not (domain and ingress == "INGRESS_TRAFFIC_INTERNAL_ONLY")
]


@pytest.mark.parametrize(("domain", "ingress"), SET_INGRESS)
def test_an_ingress_that_is_set_is_kept(domain: str, ingress: str) -> None:
    assert read(domain=domain, ingress=ingress)["ingress"] == ingress


@pytest.mark.parametrize(
    ("domain", "ingress"),
    [("", "INGRESS_TRAFFIC_ALL"), (DOMAIN, "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER")],
)
def test_an_empty_ingress_lets_in_the_front_door_or_anyone_without_one(domain: str, ingress: str) -> None:
    assert read(domain=domain, ingress="")["ingress"] == ingress


# ---- scaling: maxInstances from minInstances, concurrency 1 below one CPU, memory the CPU allows ----


@pytest.mark.parametrize(("max_instances", "accepted"), [(2, False), (3, True), (4, True)])
def test_max_instances_is_at_least_min_instances(max_instances: int, accepted: bool) -> None:
    if accepted:
        assert read(minInstances=3, maxInstances=max_instances)["max_instances"] == max_instances
        return
    assert refusal(minInstances=3, maxInstances=max_instances) == (
        f"invalid config {PROJECT}:maxInstances = 2: must be an integer from 3 to 1000 (at least 1 and at "
        "least minInstances, 3)"
    )


@pytest.mark.parametrize(
    ("cpu", "concurrency", "accepted"),
    [("0.99", 1, True), ("0.99", 2, False), ("1", 2, True), ("1", 1000, True)],
)
def test_below_one_cpu_concurrency_must_be_one(cpu: str, concurrency: int, accepted: bool) -> None:
    if accepted:
        assert read(cpu=cpu, concurrency=concurrency, memory="512Mi")["concurrency"] == concurrency
        return
    assert refusal(cpu=cpu, concurrency=concurrency, memory="512Mi") == (
        f"invalid config {PROJECT}:cpu = '0.99': below 1 CPU Cloud Run requires {PROJECT}:concurrency = 1, "
        "and it is 2: set concurrency 1, or cpu 1 or more"
    )


# Every whole CPU count of Cloud Run's table, and a fraction either side of 0.5 CPU, where the most memory
# doubles: each range's ends are taken and one MiB beyond either is refused.
CPUS = [*map(str, WHOLE_CPU_MEMORY), "0.49", "0.5"]


@pytest.mark.parametrize("cpu", CPUS)
def test_memory_is_within_what_the_cpu_allows(cpu: str) -> None:
    cores = parse_cpu(cpu)
    assert cores is not None
    allowed = memory_range(cores)
    assert allowed is not None
    least, most = allowed
    concurrency = 1 if cores < 1 else 80
    for memory in (format_bytes(least), format_bytes(most)):
        assert read(cpu=cpu, concurrency=concurrency, memory=memory)["memory"] == memory
    for memory in (f"{least // MI - 1}Mi", f"{most // MI + 1}Mi"):
        assert refusal(cpu=cpu, concurrency=concurrency, memory=memory) == (
            f"invalid config {PROJECT}:memory = '{memory}': with cpu {cpu} Cloud Run allows "
            f"{format_bytes(least)} to {format_bytes(most)}"
        )


def test_a_memory_refusal_names_the_range_in_cloud_runs_units() -> None:
    assert refusal(cpu="1", memory="4097Mi") == (
        f"invalid config {PROJECT}:memory = '4097Mi': with cpu 1 Cloud Run allows 128Mi to 4Gi"
    )


# ---- access: one way to a public service at a time ----


def test_a_disabled_invoker_check_is_refused_with_all_users() -> None:
    assert refusal(invokerIamDisabled=True, allowUnauthenticated=True) == (
        f"invalid config {PROJECT}:invokerIamDisabled = True: cannot be combined with "
        f"{PROJECT}:allowUnauthenticated = true: both make the service public; keep invokerIamDisabled (it "
        "needs no allUsers binding), set allowUnauthenticated false"
    )


def test_a_disabled_invoker_check_is_refused_with_invokers() -> None:
    invokers = ["user:a@example.com", "group:b@example.com"]
    assert refusal(invokerIamDisabled=True, allowUnauthenticated=False, invokers=invokers) == (
        f"invalid config {PROJECT}:invokerIamDisabled = True: cannot be combined with {PROJECT}:invokers = "
        f"{invokers}: with the invoker check off anyone may call the service, so the bindings would grant "
        "nothing"
    )


@pytest.mark.parametrize(
    ("disabled", "public", "invokers"),
    [(True, False, []), (False, True, ["user:a@example.com"]), (False, False, ["user:a@example.com"])],
)
def test_each_way_to_callers_on_its_own_is_taken(disabled: bool, public: bool, invokers: list[str]) -> None:
    values = read(invokerIamDisabled=disabled, allowUnauthenticated=public, invokers=invokers)
    assert (values["invoker_iam_disabled"], values["allow_unauthenticated"], values["invokers"]) == (
        disabled,
        public,
        tuple(invokers),
    )


# ---- GitHub: a repository with its ids; what needs a repository ----


@pytest.mark.parametrize(
    ("missing", "jq"), [("githubRepositoryId", ".id"), ("githubRepositoryOwnerId", ".owner.id")]
)
def test_a_repository_needs_both_its_ids(missing: str, jq: str) -> None:
    assert refusal(**{**GITHUB, missing: 0}) == (
        f"invalid config {PROJECT}:{missing} = 0: is required with {PROJECT}:githubRepository = "
        f"'acme/catalog': read it with `gh api repos/acme/catalog --jq {jq}`"
    )


def test_a_repository_with_its_ids_is_taken_and_no_repository_needs_none() -> None:
    assert read(**GITHUB)["github_repository_owner_id"] == 2
    assert read()["github_repository"] is None


def test_pull_request_revisions_need_a_repository() -> None:
    assert refusal(prRevisions=True) == (
        f"invalid config {PROJECT}:prRevisions = True: needs githubRepository (owner/repo) set as well, as "
        "its deployer is one of the CI identity's accounts: set githubRepository, or turn pull-request "
        "revisions off (`pulumi config rm prRevisions`)"
    )


def test_a_state_backend_needs_a_repository() -> None:
    assert refusal(ciStateBackend=True) == (
        f"invalid config {PROJECT}:ciStateBackend = True: needs githubRepository (owner/repo) set as well: "
        "the bucket and key are for the CI identity's accounts; set githubRepository, or `pulumi config rm "
        "ciStateBackend`"
    )


def test_what_needs_a_repository_is_taken_with_one() -> None:
    values = read(prRevisions=True, ciStateBackend=True, **GITHUB)
    assert (values["pr_revisions"], values["ci_state_backend"]) == (True, True)
