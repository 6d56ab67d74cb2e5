"""Stack configuration, read once and validated before the program declares any resource."""

from __future__ import annotations

import ipaddress
import itertools
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import PurePosixPath

import pulumi

from contract.cloudrun import (
    CPU_ALLOWED,
    MEMORY_ALLOWED,
    cpu_allowed,
    format_bytes,
    memory_range,
    parse_cpu,
    parse_memory,
)

INGRESS_VALUES = (
    "INGRESS_TRAFFIC_ALL",
    "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
)
# What the empty `ingress` (Pulumi.yaml's default) means: only the load balancer and internal traffic with a
# front door, so the run.app names cannot go around its Cloud Armor policy; anyone without one.
INGRESS_WITHOUT_FRONT_DOOR = "INGRESS_TRAFFIC_ALL"
INGRESS_WITH_FRONT_DOOR = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# Regions Cloud Run serves from (cloud.google.com/run/docs/locations, tier 1 and tier 2). A region Google adds
# later is refused until it is added here: a typo must not become a failed `up` halfway through.
CLOUD_RUN_REGIONS = frozenset(
    {
        "africa-south1",
        "asia-east1",
        "asia-east2",
        "asia-northeast1",
        "asia-northeast2",
        "asia-northeast3",
        "asia-south1",
        "asia-south2",
        "asia-southeast1",
        "asia-southeast2",
        "australia-southeast1",
        "australia-southeast2",
        "europe-central2",
        "europe-north1",
        "europe-north2",
        "europe-southwest1",
        "europe-west1",
        "europe-west2",
        "europe-west3",
        "europe-west4",
        "europe-west6",
        "europe-west8",
        "europe-west9",
        "europe-west10",
        "europe-west12",
        "me-central1",
        "me-central2",
        "me-west1",
        "northamerica-northeast1",
        "northamerica-northeast2",
        "northamerica-south1",
        "southamerica-east1",
        "southamerica-west1",
        "us-central1",
        "us-east1",
        "us-east4",
        "us-east5",
        "us-south1",
        "us-west1",
        "us-west2",
        "us-west3",
        "us-west4",
    }
)
# Cloud Armor's rate-based ban (cloud.google.com/armor/docs/rate-limiting-overview): the threshold is 1 to
# 10,000 requests per interval, the interval and the ban each one of a fixed set of lengths.
MAX_RATE_LIMIT_REQUESTS = 10_000
RATE_LIMIT_INTERVALS = (10, 30, 60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700, 3600)
BAN_DURATIONS = (60, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700, 3600)
# Each deny rule matches at most 10 ranges (a Cloud Armor limit); 100 ranges keep the policy at 10 such rules.
MAX_DENIED_IP_RANGES = 100


_A_CLOUD_RUN_REGION = "a Cloud Run region (cloud.google.com/run/docs/locations), e.g. us-east1"
_PROJECT_ID = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
# Cloud Run allows longer names, but "<serviceName>-deployer" must be a service-account id (<= 30 chars),
# as must "<serviceName>-preview".
_SERVICE_NAME = re.compile(r"[a-z][a-z0-9-]{0,19}[a-z0-9]")
# A host name a Google-managed certificate can cover: lowercase labels of letters, digits and inner hyphens,
# at least two of them, a top-level label that is not all digits; no wildcard, no trailing dot.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"(?=.{{1,253}}$)(?:{_LABEL}\.)+[a-z](?:[a-z0-9-]{{0,61}}[a-z0-9])?")
_DIGEST_IMAGE = re.compile(r"\S+@sha256:[0-9a-f]{64}")
_MEMBER = re.compile(r"(user|serviceAccount|group|domain|principal|principalSet):\S+")
_GITHUB_REPOSITORY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}")
# GitHub's ids are 64-bit integers; the environment name becomes part of an IAM principal's attribute value.
_MAX_GITHUB_ID = 2**63 - 1
_GITHUB_ENVIRONMENT = re.compile(r"[A-Za-z0-9._-]{1,100}")
# The pool id is "github-<suffix>": 4 to 32 characters.
_POOL_SUFFIX = re.compile(r"[a-z0-9]{1,25}")
# A share written as a decimal string, as the SLO goals are: "0.01", "0", "1".
_RATIO = re.compile(r"[01](?:\.[0-9]+)?")


class ConfigError(pulumi.RunError):
    """A config value the program (or Cloud Run) does not accept; names the key, value and what is allowed."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        super().__init__(f"invalid config {key} = {value!r}: {allowed}")
        self.key = key


@dataclass(frozen=True)
class StackConfig:
    """Everything the program reads from the stack's config, already validated."""

    project: str
    region: str
    service_name: str
    min_instances: int
    max_instances: int
    concurrency: int
    cpu: str
    memory: str
    request_timeout_seconds: int
    allow_unauthenticated: bool
    invokers: tuple[str, ...]
    reflection: bool
    deletion_protection: bool
    ingress: str
    image: str | None
    keep_images: int
    log_level: str
    github_repository: str | None
    ci_pool_suffix: str
    invoker_iam_disabled: bool
    # Set (not 0) whenever github_repository is.
    github_repository_id: int
    github_repository_owner_id: int
    deploy_environment: str | None
    # Releases (docs/releases.md): the candidate's share after each step, the wait before each step's checks,
    # the error ratio and call count that gate each step, and whether pull requests get pr-N revisions.
    canary_steps: tuple[int, ...]
    canary_pause_seconds: int
    canary_max_error_ratio: float
    canary_min_calls: int
    pr_revisions: bool
    # Every region the service runs in, `region` (gcp:region, home of the registry) first.
    regions: tuple[str, ...]
    # The front door's host name; None: no load balancer.
    domain: str | None
    rate_limit_requests: int
    rate_limit_interval_seconds: int
    ban_duration_seconds: int
    denied_ip_ranges: tuple[str, ...]
    # The catalog file to ship, relative to the repository root; None serves the image's embedded one.
    catalog_file: str | None


class _Reader:
    """Typed reads through `pulumi.Config`, each failure a ConfigError naming the key and what is allowed.

    Pulumi.yaml holds every default: the CLI hands them to the program as if the stack had set them (integers
    and booleans as their text, arrays as JSON), so a key the stack leaves out still has its value here.
    """

    def __init__(self, config: pulumi.Config) -> None:
        self._config = config

    def key(self, name: str) -> str:
        return self._config.full_key(name)

    def text(
        self, name: str, pattern: re.Pattern[str] | None = None, allowed: str = "", empty: bool = False
    ) -> str:
        """A string; `empty` lets "" (an optional key's default) through unchecked."""
        value = self._config.require(name)
        if value == "" and empty:
            return value
        if pattern is not None and not pattern.fullmatch(value):
            raise ConfigError(self.key(name), value, allowed)
        return value

    def integer(self, name: str, low: int, high: int, why: str = "") -> int:
        allowed = f"must be an integer from {low} to {high}" + (f" ({why})" if why else "")
        try:
            value = self._config.require_int(name)
        except pulumi.ConfigTypeError as error:
            raise ConfigError(self.key(name), error.value, allowed) from None
        if not low <= value <= high:
            raise ConfigError(self.key(name), value, allowed)
        return value

    def boolean(self, name: str) -> bool:
        try:
            return self._config.require_bool(name)
        except pulumi.ConfigTypeError as error:
            raise ConfigError(self.key(name), error.value, "must be true or false") from None

    def json(self, name: str, allowed: str) -> object:
        """A JSON value (an array or object key), its shape for the caller to check."""
        try:
            return self._config.require_object(name)
        except pulumi.ConfigTypeError as error:
            raise ConfigError(self.key(name), error.value, allowed) from None

    def strings(self, name: str) -> tuple[str, ...]:
        allowed = "must be a list of strings"
        value = self.json(name, allowed)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(self.key(name), value, allowed)
        return tuple(value)


def _check_cpu(reader: _Reader, cpu: str, concurrency: int) -> Decimal:
    cores = parse_cpu(cpu)
    if cores is None or not cpu_allowed(cores):
        raise ConfigError(reader.key("cpu"), cpu, f"must be {CPU_ALLOWED}")
    if cores < 1 and concurrency != 1:
        raise ConfigError(
            reader.key("cpu"),
            cpu,
            f"below 1 CPU Cloud Run requires concurrency 1, and concurrency is {concurrency}",
        )
    return cores


def _check_memory(reader: _Reader, memory: str, cpu: str, cores: Decimal) -> None:
    amount = parse_memory(memory)
    if amount is None:
        raise ConfigError(reader.key("memory"), memory, f"must be {MEMORY_ALLOWED}")
    allowed = memory_range(cores)
    assert allowed is not None, "_check_cpu admits only CPU counts Cloud Run accepts"
    low, high = allowed
    if not low <= amount <= high:
        raise ConfigError(
            reader.key("memory"),
            memory,
            f"with cpu {cpu} Cloud Run allows {format_bytes(low)} to {format_bytes(high)}",
        )


def _check_invokers(reader: _Reader, invokers: tuple[str, ...]) -> None:
    key = reader.key("invokers")
    for member in invokers:
        if member in ("allUsers", "allAuthenticatedUsers"):
            raise ConfigError(
                key,
                member,
                "public access is invokerIamDisabled's (or allowUnauthenticated's) job, not an invoker",
            )
        if not _MEMBER.fullmatch(member):
            raise ConfigError(
                key,
                member,
                "each must be an IAM member: user:EMAIL, group:EMAIL, serviceAccount:EMAIL or domain:NAME",
            )
    if len(set(invokers)) != len(invokers):
        raise ConfigError(key, list(invokers), "members must not repeat")


def _check_access(read: _Reader, public: bool, invoker_iam_disabled: bool, invokers: tuple[str, ...]) -> None:
    # Two ways to a public service: an allUsers binding (refused where Domain Restricted Sharing is enforced)
    # or no invoker check at all. Both at once still needs the binding, and fails wherever that is refused.
    if invoker_iam_disabled and public:
        raise ConfigError(
            read.key("invokerIamDisabled"),
            True,
            f"cannot be combined with {read.key('allowUnauthenticated')} = true: both make the service "
            "public; keep invokerIamDisabled (it needs no allUsers binding), set allowUnauthenticated false",
        )
    if invoker_iam_disabled and invokers:
        raise ConfigError(
            read.key("invokerIamDisabled"),
            True,
            f"cannot be combined with {read.key('invokers')} = {list(invokers)}: with the invoker check off "
            "anyone may call the service, so the bindings would grant nothing",
        )


def _check_github_ids(read: _Reader, repository: str, repository_id: int, owner_id: int) -> None:
    # The provider trusts tokens by the repository's and owner's ids as well as the name: a name can be
    # taken over after a rename or a transfer, an id cannot.
    for name, value, jq in (
        ("githubRepositoryId", repository_id, ".id"),
        ("githubRepositoryOwnerId", owner_id, ".owner.id"),
    ):
        if repository and value == 0:
            raise ConfigError(
                read.key(name),
                value,
                f"is required with {read.key('githubRepository')} = {repository!r}: read it with "
                f"`gh api repos/{repository} --jq {jq}`",
            )


def _canary_steps(reader: _Reader) -> tuple[int, ...]:
    """canarySteps: increasing percentages from 1 to 100 ending at 100; [100] releases all at once."""
    allowed = "must be a list of increasing percentages from 1 to 100 that ends at 100, such as [10, 50, 100]"
    steps = reader.json("canarySteps", allowed)
    if (
        not isinstance(steps, list)
        or not steps
        or not all(
            isinstance(step, int) and not isinstance(step, bool) and 1 <= step <= 100 for step in steps
        )
        or any(later <= earlier for earlier, later in itertools.pairwise(steps))
        or steps[-1] != 100
    ):
        raise ConfigError(reader.key("canarySteps"), steps, allowed)
    return tuple(steps)


def _max_error_ratio(reader: _Reader) -> float:
    """canaryMaxErrorRatio: the candidate's highest tolerated share of failed calls, from 0 to 1."""
    raw = reader.text("canaryMaxErrorRatio")
    allowed = 'must be a share from 0 to 1 (0 and 1 included), written as a string such as "0.01"'
    if not _RATIO.fullmatch(raw) or float(raw) > 1:
        raise ConfigError(reader.key("canaryMaxErrorRatio"), raw, allowed)
    return float(raw)


def _pr_revisions(reader: _Reader, github_repository: str, domain: str | None) -> bool:
    """The prRevisions key; it needs githubRepository, as its deployer is one of the repository's."""
    enabled = reader.boolean("prRevisions")
    if enabled and domain:
        # A pr-N revision is checked and used through its run.app tag URL, which the load-balancer-only
        # ingress of a front door refuses from the internet, and the URL map routes no pr-N tag.
        raise ConfigError(
            reader.key("prRevisions"),
            True,
            f"cannot be combined with {reader.key('domain')} = {domain!r}: behind the front door the "
            "services admit only the load balancer, so a pull request's tag URL would refuse every call; "
            "keep pull-request revisions on a stack without a domain (dev), or turn them off here",
        )
    if enabled and not github_repository:
        raise ConfigError(
            reader.key("prRevisions"),
            True,
            "needs githubRepository (owner/repo) set as well, as its deployer is one of the CI identity's "
            "accounts: set githubRepository, or turn pull-request revisions off "
            "(`pulumi config rm prRevisions`)",
        )
    return enabled


def _check_regions(read: _Reader, home: str, listed: tuple[str, ...], min_instances: int) -> tuple[str, ...]:
    """Every region to serve from, the home region (gcp:region) first; [] means the home region alone."""
    key = read.key("regions")
    for region in listed:
        if region not in CLOUD_RUN_REGIONS:
            raise ConfigError(
                key,
                region,
                f"each must be {_A_CLOUD_RUN_REGION}",
            )
    if len(set(listed)) != len(listed):
        raise ConfigError(key, list(listed), "regions must not repeat")
    if listed and home not in listed:
        raise ConfigError(
            key,
            list(listed),
            f"must include gcp:region ({home}): the registry lives there, and its service keeps the names a "
            "single-region stack has",
        )
    regions = (home, *(region for region in listed if region != home))
    # Cloud Run's service health judges a region by its instances' readiness probes, and with none running it
    # has nothing to judge: each region keeps one warm (cloud.google.com/run/docs/configuring/
    # configure-service-health). Refused rather than raised, so that the cost is the stack's own choice.
    if len(regions) > 1 and min_instances < 1:
        raise ConfigError(
            read.key("minInstances"),
            min_instances,
            f"must be at least 1 with several regions ({', '.join(regions)}): failover needs a warm instance "
            "in each region",
        )
    return regions


@dataclass(frozen=True)
class _FrontDoor:
    domain: str | None
    rate_limit_requests: int
    rate_limit_interval_seconds: int
    ban_duration_seconds: int
    denied_ip_ranges: tuple[str, ...]


def _one_of(read: _Reader, name: str, allowed: tuple[int, ...]) -> int:
    value = read.integer(name, min(allowed), max(allowed))
    if value not in allowed:
        raise ConfigError(read.key(name), value, f"must be one of {', '.join(map(str, allowed))}")
    return value


def _read_front_door(read: _Reader) -> _FrontDoor:
    """The load balancer's settings; all checked, even while `domain` is empty and nothing uses them."""
    domain = read.text(
        "domain",
        _DOMAIN,
        "must be a DNS name such as catalog.example.com: lowercase letters, digits, hyphens and dots, at "
        "least two labels, no wildcard, no trailing dot",
        empty=True,
    )
    rate_limit_requests = read.integer(
        "rateLimitRequests", 1, MAX_RATE_LIMIT_REQUESTS, "Cloud Armor's range for a rate-based ban"
    )
    rate_limit_interval_seconds = _one_of(read, "rateLimitIntervalSeconds", RATE_LIMIT_INTERVALS)
    ban_duration_seconds = _one_of(read, "banDurationSeconds", BAN_DURATIONS)
    denied = read.strings("deniedIpRanges")
    key = read.key("deniedIpRanges")
    for entry in denied:
        try:
            ipaddress.ip_network(entry, strict=True)
        except ValueError:
            raise ConfigError(
                key, entry, "each must be an IPv4 or IPv6 address or range (CIDR) such as 203.0.113.0/24"
            ) from None
    if len(set(denied)) != len(denied):
        raise ConfigError(key, list(denied), "ranges must not repeat")
    if len(denied) > MAX_DENIED_IP_RANGES:
        raise ConfigError(key, f"{len(denied)} ranges", f"at most {MAX_DENIED_IP_RANGES} ranges")
    if denied and not domain:
        raise ConfigError(
            key,
            list(denied),
            f"needs {read.key('domain')}: the ranges are denied by the load balancer's Cloud Armor policy, "
            "and there is no load balancer without a domain",
        )
    return _FrontDoor(
        domain=domain or None,
        rate_limit_requests=rate_limit_requests,
        rate_limit_interval_seconds=rate_limit_interval_seconds,
        ban_duration_seconds=ban_duration_seconds,
        denied_ip_ranges=denied,
    )


def _check_ingress(read: _Reader, ingress: str, domain: str | None) -> str:
    """The ingress each service gets: the configured one, or (empty) the one that suits the front door."""
    key = read.key("ingress")
    if ingress == "":
        return INGRESS_WITH_FRONT_DOOR if domain else INGRESS_WITHOUT_FRONT_DOOR
    if ingress not in INGRESS_VALUES:
        raise ConfigError(key, ingress, f"must be one of {', '.join(INGRESS_VALUES)}, or empty")
    if domain and ingress == "INGRESS_TRAFFIC_INTERNAL_ONLY":
        raise ConfigError(
            key,
            ingress,
            f"refuses the external load balancer that {read.key('domain')} = {domain!r} puts in front: use "
            f"{INGRESS_WITH_FRONT_DOOR} (or leave ingress empty)",
        )
    return ingress


def _check_catalog_file(read: _Reader, path: str) -> str | None:
    """The catalog file's path, relative to the repository root and inside it; "" (the default) is None.

    Only its form: the file itself is checked by the server's loader (catalog_data.check_catalog).
    """
    if path == "":
        return None
    parts = PurePosixPath(path).parts
    if path.startswith("/") or "\\" in path or ".." in parts or path.endswith("/"):
        raise ConfigError(
            read.key("catalogFile"),
            path,
            "must be a file's path relative to the repository root, inside it, with / separators "
            "(e.g. data/catalog.json)",
        )
    return str(PurePosixPath(path))


def load() -> StackConfig:
    """Read the stack's config and validate it; raise ConfigError on the first invalid value."""
    gcp = _Reader(pulumi.Config("gcp"))
    read = _Reader(pulumi.Config())

    # gcp:project has no default anywhere (a stack must name its project); the provider reads it too.
    project = pulumi.Config("gcp").get("project") or ""
    if not _PROJECT_ID.fullmatch(project):
        raise ConfigError(
            gcp.key("project"),
            project,
            "must be a Google Cloud project id (6 to 30 lowercase letters, digits or hyphens; "
            "set it with `pulumi config set gcp:project ID`)",
        )
    # The same list as `regions`: a region shaped right that Cloud Run does not serve from (a typo such as
    # us-central9) would otherwise fail halfway through the first `up`.
    region = gcp.text("region")
    if region not in CLOUD_RUN_REGIONS:
        raise ConfigError(gcp.key("region"), region, f"must be {_A_CLOUD_RUN_REGION}")

    service_name = read.text(
        "serviceName",
        _SERVICE_NAME,
        "must be 2 to 21 lowercase letters, digits or hyphens, start with a letter and not end with a hyphen",
    )
    min_instances = read.integer("minInstances", 0, 1000)
    max_instances = read.integer(
        "maxInstances",
        max(1, min_instances),
        1000,
        f"at least 1 and at least minInstances, {min_instances}",
    )
    concurrency = read.integer("concurrency", 1, 1000)
    cpu = read.text("cpu")
    cores = _check_cpu(read, cpu, concurrency)
    memory = read.text("memory")
    _check_memory(read, memory, cpu, cores)
    request_timeout_seconds = read.integer("requestTimeoutSeconds", 1, 3600)
    invokers = read.strings("invokers")
    _check_invokers(read, invokers)
    allow_unauthenticated = read.boolean("allowUnauthenticated")
    invoker_iam_disabled = read.boolean("invokerIamDisabled")
    _check_access(read, allow_unauthenticated, invoker_iam_disabled, invokers)
    regions = _check_regions(read, region, read.strings("regions"), min_instances)
    front_door = _read_front_door(read)
    ingress = _check_ingress(read, read.text("ingress"), front_door.domain)
    log_level = read.text("logLevel")
    if log_level not in LOG_LEVELS:
        raise ConfigError(read.key("logLevel"), log_level, f"must be one of {', '.join(LOG_LEVELS)}")
    image = read.text(
        "image",
        _DIGEST_IMAGE,
        "must be pinned by digest (REGISTRY/PATH@sha256:<64 hex digits>): a new image, a new revision",
        empty=True,
    )
    github_repository = read.text(
        "githubRepository", _GITHUB_REPOSITORY, "must be a GitHub repository as owner/name", empty=True
    )
    github_repository_id = read.integer("githubRepositoryId", 0, _MAX_GITHUB_ID)
    github_repository_owner_id = read.integer("githubRepositoryOwnerId", 0, _MAX_GITHUB_ID)
    _check_github_ids(read, github_repository, github_repository_id, github_repository_owner_id)
    deploy_environment = read.text(
        "deployEnvironment",
        _GITHUB_ENVIRONMENT,
        "must be a GitHub environment name: 1 to 100 letters, digits, '.', '_' or '-'",
        empty=True,
    )

    return StackConfig(
        project=project,
        region=region,
        service_name=service_name,
        min_instances=min_instances,
        max_instances=max_instances,
        concurrency=concurrency,
        cpu=cpu,
        memory=memory,
        request_timeout_seconds=request_timeout_seconds,
        allow_unauthenticated=allow_unauthenticated,
        invokers=invokers,
        reflection=read.boolean("reflection"),
        deletion_protection=read.boolean("deletionProtection"),
        ingress=ingress,
        image=image or None,
        keep_images=read.integer("keepImages", 1, 1000),
        log_level=log_level,
        github_repository=github_repository or None,
        ci_pool_suffix=read.text("ciPoolSuffix", _POOL_SUFFIX, "must be 1 to 25 lowercase letters or digits"),
        invoker_iam_disabled=invoker_iam_disabled,
        github_repository_id=github_repository_id,
        github_repository_owner_id=github_repository_owner_id,
        deploy_environment=deploy_environment or None,
        canary_steps=_canary_steps(read),
        canary_pause_seconds=read.integer("canaryPauseSeconds", 0, 3600),
        canary_max_error_ratio=_max_error_ratio(read),
        canary_min_calls=read.integer("canaryMinCalls", 0, 1_000_000),
        pr_revisions=_pr_revisions(read, github_repository, front_door.domain),
        regions=regions,
        domain=front_door.domain,
        rate_limit_requests=front_door.rate_limit_requests,
        rate_limit_interval_seconds=front_door.rate_limit_interval_seconds,
        ban_duration_seconds=front_door.ban_duration_seconds,
        denied_ip_ranges=front_door.denied_ip_ranges,
        catalog_file=_check_catalog_file(read, read.text("catalogFile")),
    )


# ---- Observability (SLOs and alerts): validated on their own, after load(), before any resource ----

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_CHANNEL = re.compile(r"projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/notificationChannels/[0-9]+")
_GOAL = re.compile(r"0\.[0-9]+")
# The windows Cloud Monitoring's rolling SLOs take, and burn-rate alerting is tuned for (see observability).
SLO_WINDOW_DAYS = (7, 14, 28, 30)
# Access lines of successful calls are written at INFO: above it the SLOs would count only failures.
_ACCESS_LOG_LEVELS = ("DEBUG", "INFO")


@dataclass(frozen=True)
class ObservabilityConfig:
    """The objectives and who is told when they are at risk, already validated."""

    availability_goal: float
    latency_goal: float
    latency_threshold_ms: int
    slo_window_days: int
    alert_emails: tuple[str, ...]
    alert_channels: tuple[str, ...]


def _goal(reader: _Reader, name: str) -> float:
    raw = reader.text(name)
    allowed = 'must be a share strictly between 0 and 1, written as a string such as "0.999"'
    if not _GOAL.fullmatch(raw) or float(raw) == 0:
        raise ConfigError(reader.key(name), raw, allowed)
    return float(raw)


def load_observability(stack: StackConfig) -> ObservabilityConfig:
    """Read and validate the SLO and alerting keys; raise ConfigError on the first invalid value."""
    read = _Reader(pulumi.Config())
    if stack.log_level not in _ACCESS_LOG_LEVELS:
        raise ConfigError(
            read.key("logLevel"),
            stack.log_level,
            "the SLOs are computed from the INFO access line of every call: use DEBUG or INFO",
        )
    window = read.integer("sloWindowDays", min(SLO_WINDOW_DAYS), max(SLO_WINDOW_DAYS))
    if window not in SLO_WINDOW_DAYS:
        raise ConfigError(
            read.key("sloWindowDays"), window, f"must be one of {', '.join(map(str, SLO_WINDOW_DAYS))} (days)"
        )
    longest_ms = stack.request_timeout_seconds * 1000
    threshold = read.integer(
        "latencyThresholdMs", 1, longest_ms, "no call lasts longer than requestTimeoutSeconds"
    )
    emails = read.strings("alertEmails")
    for email in emails:
        if not _EMAIL.fullmatch(email):
            raise ConfigError(
                read.key("alertEmails"), email, "each must be an email address such as oncall@example.com"
            )
    channels = read.strings("alertChannels")
    for channel in channels:
        if not _CHANNEL.fullmatch(channel):
            raise ConfigError(
                read.key("alertChannels"),
                channel,
                "each must be a notification channel name: projects/PROJECT_ID/notificationChannels/NUMBER",
            )
    for key, values in (("alertEmails", emails), ("alertChannels", channels)):
        if len(set(values)) != len(values):
            raise ConfigError(read.key(key), list(values), "entries must not repeat")
    return ObservabilityConfig(
        availability_goal=_goal(read, "availabilityGoal"),
        latency_goal=_goal(read, "latencyGoal"),
        latency_threshold_ms=threshold,
        slo_window_days=window,
        alert_emails=emails,
        alert_channels=channels,
    )
