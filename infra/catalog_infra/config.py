"""Stack configuration: each key declared once, read through `pulumi.Config`, validated before any resource.

A key's declaration is a settings field: its Python type and its `Key` (name, what it accepts, what a refusal
says; config_keys.py reads them). A key a component reads is declared beside that component (GrpcService's
and FrontDoor's settings), the program's own keys below; StackConfig is made of them all. The refusals, the
test of Pulumi.yaml's types and the docs tests use the same declarations; the few rules that join keys follow
as named functions. Pulumi.yaml holds every default: the CLI hands them to the program as if the stack had
set them.
"""

import math
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Annotated, Any

from catalog_infra.config_keys import ConfigError, Key, declared, integer, one_of, read_all
from catalog_infra.front_door import FrontDoorSettings
from catalog_infra.grpc_service import INGRESS_VALUES, GrpcServiceSettings
from contract.cloudrun import CLOUD_RUN_REGIONS, format_bytes, memory_range, parse_cpu, parse_memory
from contract.release import STEPS_RULE, check_steps
from service.config import MAX_STALLED_STREAM_SECONDS, MIN_STALLED_STREAM_SECONDS
from service.limits import MAX_CONNECTION_AGE_GRACE_MS

__all__ = [
    "INGRESS_VALUES",
    "KEYS",
    "ConfigError",
    "ObservabilityConfig",
    "StackConfig",
    "load",
    "load_observability",
]

# What the empty `ingress` (Pulumi.yaml's default) means: only the load balancer and internal traffic with a
# front door, so the run.app names cannot go around its Cloud Armor policy; anyone without one.
INGRESS_WITHOUT_FRONT_DOOR = "INGRESS_TRAFFIC_ALL"
INGRESS_WITH_FRONT_DOOR = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
# The server also takes WARNING, ERROR and CRITICAL, but the SLOs count the INFO access line of every call.
LOG_LEVELS = ("DEBUG", "INFO")
# The windows Cloud Monitoring's rolling SLOs take, and burn-rate alerting is tuned for (see observability).
SLO_WINDOW_DAYS = (7, 14, 28, 30)
_STALLED_LOW = math.ceil(MIN_STALLED_STREAM_SECONDS)
_STALLED_HIGH = math.floor(MAX_STALLED_STREAM_SECONDS)
_GITHUB_ID = 2**63 - 1  # GitHub's ids are 64-bit integers
_REGION = "a Cloud Run region (cloud.google.com/run/docs/locations), e.g. us-east1"
_LONGEST_CALL = "no call lasts longer than requestTimeoutSeconds"
_GOAL = 'must be a share strictly between 0 and 1, written as a string such as "0.999"'


def _inside_repository(path: str) -> bool:
    return not (
        path.startswith("/") or "\\" in path or ".." in PurePosixPath(path).parts or path.endswith("/")
    )


@dataclass(frozen=True)
class ProgramSettings:
    """The keys the program itself reads (the components' are declared beside each component)."""

    # fmt: off
    project: Annotated[str, Key("gcp:project", pattern=r"[a-z][a-z0-9-]{4,28}[a-z0-9]",
        allowed="must be a Google Cloud project id (6 to 30 lowercase letters, digits or hyphens)")]
    # The home region: the registry, and the service that keeps its names when `regions` adds others.
    region: Annotated[str, Key("gcp:region", f"must be {_REGION}", test=CLOUD_RUN_REGIONS.__contains__)]
    # "<serviceName>-deployer" must be a service-account id (at most 30 characters).
    service_name: Annotated[str, Key("serviceName", pattern=r"[a-z][a-z0-9-]{0,19}[a-z0-9]",
        allowed="must be 2 to 21 lowercase letters, digits or hyphens, start with a letter and not end "
        "with a hyphen")]
    reflection: Annotated[bool, Key("reflection", env="ENABLE_REFLECTION")]
    image: Annotated[str | None, Key("image", pattern=r"\S+@sha256:[0-9a-f]{64}", allowed="must be pinned by "
        "digest (REGISTRY/PATH@sha256:<64 hex digits>): a new image, a new revision")]
    keep_images: Annotated[int, integer("keepImages", 1, 1000)]
    log_level: Annotated[str, Key("logLevel", choices=LOG_LEVELS, env="LOG_LEVEL",
        allowed=f"must be one of {', '.join(LOG_LEVELS)}: the SLOs count every call's INFO access line, so "
        "use DEBUG or INFO")]
    # How long a response stream may send nothing (its client stopped reading) before the server cancels it.
    # The server's bounds (service/config.py), in whole seconds.
    stalled_stream_seconds: Annotated[int, Key("stalledStreamSeconds", low=_STALLED_LOW, high=_STALLED_HIGH,
        env="STALLED_STREAM_SECONDS", allowed=f"must be an integer from {_STALLED_LOW} to {_STALLED_HIGH} "
        "(the server's range: a stalled stream is cancelled before the connection age grace, "
        f"{MAX_CONNECTION_AGE_GRACE_MS // 1000} s, runs out)")]
    github_repository: Annotated[str | None, Key("githubRepository", "must be a GitHub repository as "
        "owner/name", pattern=r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}")]
    # The pool id is "github-<suffix>": 4 to 32 characters.
    ci_pool_suffix: Annotated[str, Key("ciPoolSuffix", "must be 1 to 25 lowercase letters or digits",
        pattern=r"[a-z0-9]{1,25}")]
    # Set (not 0) whenever github_repository is.
    github_repository_id: Annotated[int, integer("githubRepositoryId", 0, _GITHUB_ID)]
    github_repository_owner_id: Annotated[int, integer("githubRepositoryOwnerId", 0, _GITHUB_ID)]
    deploy_environment: Annotated[str | None, Key("deployEnvironment", pattern=r"[A-Za-z0-9._-]{1,100}",
        allowed="must be a GitHub environment name: 1 to 100 letters, digits, '.', '_' or '-'")]
    # Releases (docs/releases.md): the candidate's share after each step, the wait before each step's checks,
    # the error ratio and call count that gate each step, and whether pull requests get pr-N revisions.
    canary_steps: Annotated[tuple[int, ...], Key("canarySteps", f"must be a list of {STEPS_RULE}",
        test=check_steps)]
    canary_pause_seconds: Annotated[int, integer("canaryPauseSeconds", 0, 3600)]
    canary_max_error_ratio: Annotated[float, Key("canaryMaxErrorRatio", pattern=r"[01](\.[0-9]+)?",
        test=lambda share: float(share) <= 1,
        allowed='must be a share from 0 to 1 (0 and 1 included), written as a string such as "0.01"')]
    canary_min_calls: Annotated[int, integer("canaryMinCalls", 0, 1_000_000)]
    # The latency gate (docs/observability.md): the candidate's p95 and p99 against stable's, times at most
    # this ("" judges no latency), absolute bounds in ms (0: none), and the wait for Monitoring's points.
    canary_max_latency_ratio: Annotated[float | None, Key("canaryMaxLatencyRatio",
        pattern=r"[0-9]+(\.[0-9]+)?", test=lambda ratio: 1 <= float(ratio) <= 100,
        allowed='must be a ratio from 1 to 100 written as a string such as "1.5", or "" to judge no latency')]
    canary_max_p95_ms: Annotated[int, integer("canaryMaxP95Ms", 0, 3_600_000)]
    canary_max_p99_ms: Annotated[int, integer("canaryMaxP99Ms", 0, 3_600_000)]
    canary_ingestion_delay_seconds: Annotated[int, integer("canaryIngestionDelaySeconds", 0, 600)]
    pr_revisions: Annotated[bool, Key("prRevisions")]
    # A state bucket and secrets key for a self-managed backend, used by the CI identity (ci_state.py).
    ci_state_backend: Annotated[bool, Key("ciStateBackend")]
    # Every region the service runs in, `region` (gcp:region, home of the registry) first.
    regions: Annotated[tuple[str, ...], Key("regions", f"each must be {_REGION}",
        test=CLOUD_RUN_REGIONS.__contains__)]
    # The catalog file to ship, relative to the repository root; None serves the image's embedded one. Only
    # its form: the file itself is checked by the server's loader (catalog_data.check_catalog).
    catalog_file: Annotated[str | None, Key("catalogFile", test=_inside_repository, allowed="must be a "
        "file's path relative to the repository root, inside it, with / separators (e.g. data/catalog.json)")]
    # fmt: on


@dataclass(frozen=True)
class StackConfig(FrontDoorSettings, GrpcServiceSettings, ProgramSettings):
    """Everything the program reads from the stack's config, already validated.

    Made of the program's own keys and each component's settings, so the program hands a component its
    settings whole. The keys are read (and a missing one named) in that order: the program's, GrpcService's,
    FrontDoor's.
    """

    @property
    def server_env(self) -> dict[str, str]:
        """The server's environment variables that keys carry (their `env`), as the server reads them."""
        values = {key.env: getattr(self, field) for field, key in declared(StackConfig).items() if key.env}
        return {
            env: str(value).lower() if isinstance(value, bool) else str(value)
            for env, value in values.items()
        }


@dataclass(frozen=True)
class ObservabilityConfig:
    """The objectives and who is told when they are at risk, already validated."""

    # fmt: off
    availability_goal: Annotated[float, Key("availabilityGoal", _GOAL, pattern=r"0\.[0-9]+", test=float)]
    latency_goal: Annotated[float, Key("latencyGoal", _GOAL, pattern=r"0\.[0-9]+", test=float)]
    latency_threshold_ms: Annotated[int, integer("latencyThresholdMs", 1, 3_600_000, _LONGEST_CALL)]
    slo_window_days: Annotated[int, one_of("sloWindowDays", SLO_WINDOW_DAYS)]
    alert_emails: Annotated[tuple[str, ...], Key("alertEmails", "each must be an email address such as "
        "oncall@example.com", pattern=r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")]
    alert_channels: Annotated[tuple[str, ...], Key("alertChannels", "each must be a notification channel "
        "name: projects/PROJECT_ID/notificationChannels/NUMBER",
        pattern=r"projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/notificationChannels/[0-9]+")]
    # fmt: on


# Every key the program reads, provider keys included, as the table declares them.
KEYS = (*declared(StackConfig).values(), *declared(ObservabilityConfig).values())


def _refuse(field: str, value: object, allowed: str) -> ConfigError:
    return ConfigError(declared(StackConfig)[field].full_name, value, allowed)


def _name(field: str) -> str:
    return declared(StackConfig)[field].full_name


# ---- The rules that join keys: each names the key it refuses and says what the other key holds ----


def check_scaling(c: dict[str, Any]) -> None:
    """At least minInstances instances; concurrency 1 below 1 CPU; memory in the range the CPU allows."""
    low, highest = c["min_instances"], declared(StackConfig)["max_instances"].high
    if c["max_instances"] < low:
        allowed = f"must be an integer from {low} to {highest} (at least 1 and at least minInstances, {low})"
        raise _refuse("max_instances", c["max_instances"], allowed)
    # The cpu and memory keys admit only what Cloud Run accepts: a CPU count with a memory range, a quantity.
    cores, memory = parse_cpu(c["cpu"]), parse_memory(c["memory"])
    assert cores is not None
    assert memory is not None
    if cores < 1 and c["concurrency"] != 1:
        allowed = (
            f"below 1 CPU Cloud Run requires {_name('concurrency')} = 1, and it is {c['concurrency']}: set "
            "concurrency 1, or cpu 1 or more"
        )
        raise _refuse("cpu", c["cpu"], allowed)
    memory_allowed = memory_range(cores)
    assert memory_allowed is not None
    least, most = memory_allowed
    if not least <= memory <= most:
        allowed = f"with cpu {c['cpu']} Cloud Run allows {format_bytes(least)} to {format_bytes(most)}"
        raise _refuse("memory", c["memory"], allowed)


def check_access(c: dict[str, Any]) -> None:
    """One way to a public service at a time: an allUsers binding, or no invoker check at all."""
    # The binding is refused under Domain Restricted Sharing; with the check off it would grant nothing.
    if c["invoker_iam_disabled"] and c["allow_unauthenticated"]:
        allowed = (
            f"cannot be combined with {_name('allow_unauthenticated')} = true: both make the service public; "
            "keep invokerIamDisabled (it needs no allUsers binding), set allowUnauthenticated false"
        )
        raise _refuse("invoker_iam_disabled", True, allowed)
    if c["invoker_iam_disabled"] and c["invokers"]:
        allowed = (
            f"cannot be combined with {_name('invokers')} = {list(c['invokers'])}: with the invoker check "
            "off anyone may call the service, so the bindings would grant nothing"
        )
        raise _refuse("invoker_iam_disabled", True, allowed)


def check_github(c: dict[str, Any]) -> None:
    """A repository needs its ids (a name can change hands, an id cannot); prRevisions, ciStateBackend one."""
    repository = c["github_repository"]
    for field, jq in (("github_repository_id", ".id"), ("github_repository_owner_id", ".owner.id")):
        if repository and c[field] == 0:
            allowed = f"is required with {_name('github_repository')} = {repository!r}: read it with "
            raise _refuse(field, 0, f"{allowed}`gh api repos/{repository} --jq {jq}`")
    if c["pr_revisions"] and not repository:
        allowed = (
            "needs githubRepository (owner/repo) set as well, as its deployer is one of the CI identity's "
            "accounts: set githubRepository, or turn pull-request revisions off "
            "(`pulumi config rm prRevisions`)"
        )
        raise _refuse("pr_revisions", True, allowed)
    if c["ci_state_backend"] and not repository:
        allowed = (
            "needs githubRepository (owner/repo) set as well: the bucket and key are for the CI identity's "
            "accounts; set githubRepository, or `pulumi config rm ciStateBackend`"
        )
        raise _refuse("ci_state_backend", True, allowed)


def check_regions(c: dict[str, Any]) -> None:
    """`regions` includes the home region, which goes first; several regions keep an instance warm in each."""
    home, listed = c["region"], c["regions"]
    if listed and home not in listed:
        allowed = (
            f"must include gcp:region ({home}): the registry lives there, and its service keeps the names a "
            "single-region stack has"
        )
        raise _refuse("regions", list(listed), allowed)
    c["regions"] = (home, *(region for region in listed if region != home))
    # Cloud Run's service health judges a region by its instances' readiness probes, and with none running it
    # has nothing to judge (cloud.google.com/run/docs/configuring/configure-service-health). Refused rather
    # than raised, so that the cost is the stack's own choice.
    if len(c["regions"]) > 1 and c["min_instances"] < 1:
        allowed = (
            f"must be at least 1 with several regions ({', '.join(c['regions'])}): failover needs a warm "
            "instance in each region"
        )
        raise _refuse("min_instances", c["min_instances"], allowed)


def check_front_door(c: dict[str, Any]) -> None:
    """Denied ranges need the load balancer, which the ingress must let in; no pull-request revisions there.

    An empty ingress picks the one that lets the load balancer in.
    """
    domain, ingress = c["domain"], c["ingress"]
    if c["denied_ip_ranges"] and not domain:
        allowed = (
            f"needs {_name('domain')}: the ranges are denied by the load balancer's Cloud Armor policy, and "
            "there is no load balancer without a domain"
        )
        raise _refuse("denied_ip_ranges", list(c["denied_ip_ranges"]), allowed)
    if domain and ingress == "INGRESS_TRAFFIC_INTERNAL_ONLY":
        allowed = (
            f"refuses the external load balancer that {_name('domain')} = {domain!r} puts in front: use "
            f"{INGRESS_WITH_FRONT_DOOR} (or leave ingress empty)"
        )
        raise _refuse("ingress", ingress, allowed)
    if domain and c["pr_revisions"]:
        # A pr-N revision is checked and used through its run.app tag URL, which the load-balancer-only
        # ingress of a front door refuses from the internet, and the URL map routes no pr-N tag.
        allowed = (
            f"cannot be combined with {_name('domain')} = {domain!r}: behind the front door the services "
            "admit only the load balancer, so a pull request's tag URL would refuse every call; keep "
            "pull-request revisions on a stack without a domain (dev), or turn them off here"
        )
        raise _refuse("pr_revisions", True, allowed)
    c["ingress"] = ingress or (INGRESS_WITH_FRONT_DOOR if domain else INGRESS_WITHOUT_FRONT_DOOR)


def load() -> StackConfig:
    """Read the stack's config and validate it; raise ConfigError on the first invalid value."""
    values = read_all(StackConfig)
    for rule in (check_scaling, check_access, check_github, check_regions, check_front_door):
        rule(values)
    return StackConfig(**values)


def load_observability(stack: StackConfig) -> ObservabilityConfig:
    """Read and validate the SLO and alerting keys; raise ConfigError on the first invalid value."""
    # No call lasts longer than requestTimeoutSeconds: the threshold's bound comes from it.
    threshold = integer("latencyThresholdMs", 1, stack.request_timeout_seconds * 1000, _LONGEST_CALL)
    return ObservabilityConfig(**read_all(ObservabilityConfig, latency_threshold_ms=threshold))
