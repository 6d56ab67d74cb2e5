"""Stack configuration, read once and validated before the program declares any resource."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import pulumi

MI = 2**20
GI = 2**30

INGRESS_VALUES = (
    "INGRESS_TRAFFIC_ALL",
    "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# Whole CPU counts Cloud Run accepts, with the memory each allows (cloud.google.com/run/docs/configuring/
# services/memory-limits, "memory required when setting a CPU value"). Below 1 CPU: up to 512Mi under 0.5 CPU,
# up to 1Gi from 0.5 CPU. 128Mi is the smallest memory Cloud Run takes at all.
MIN_MEMORY = 128 * MI
WHOLE_CPU_MEMORY = {
    1: (MIN_MEMORY, 4 * GI),
    2: (MIN_MEMORY, 8 * GI),
    4: (2 * GI, 16 * GI),
    6: (4 * GI, 24 * GI),
    8: (4 * GI, 32 * GI),
}
_MEMORY_UNITS = {"Mi": MI, "Gi": GI, "M": 10**6, "G": 10**9}

_PROJECT_ID = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+")
# Cloud Run allows longer names, but "<serviceName>-deployer" must be a service-account id (<= 30 chars),
# as must "<serviceName>-preview".
_SERVICE_NAME = re.compile(r"[a-z][a-z0-9-]{0,19}[a-z0-9]")
_CPU = re.compile(r"(?P<cores>[0-9]+(?:\.[0-9]+)?)|(?P<milli>[0-9]+)m")
_MEMORY = re.compile(r"(?P<amount>[1-9][0-9]*)(?P<unit>Mi|Gi|M|G)")
_DIGEST_IMAGE = re.compile(r"\S+@sha256:[0-9a-f]{64}")
_MEMBER = re.compile(r"(user|serviceAccount|group|domain|principal|principalSet):\S+")
_GITHUB_REPOSITORY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}")
# The pool id is "github-<suffix>": 4 to 32 characters.
_POOL_SUFFIX = re.compile(r"[a-z0-9]{1,25}")


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
    # Releases (docs/releases.md): the candidate's share after each step, the wait before each step's checks,
    # and whether pull requests get pr-N revisions of this stack's service.
    canary_steps: tuple[int, ...] = (10, 50, 100)
    canary_pause_seconds: int = 60
    pr_revisions: bool = False


class _Reader:
    """Reads raw config strings and turns each into a typed value or a ConfigError naming its key."""

    def __init__(self, config: pulumi.Config) -> None:
        self._config = config

    def key(self, name: str) -> str:
        return self._config.full_key(name)

    def text(self, name: str, default: str, pattern: re.Pattern[str] | None = None, allowed: str = "") -> str:
        value = self._config.get(name)
        # Optional keys default to "" in Pulumi.yaml, and the CLI hands that default to the program.
        if value is None or (value == "" and default == ""):
            return default
        if pattern is not None and not pattern.fullmatch(value):
            raise ConfigError(self.key(name), value, allowed)
        return value

    def integer(self, name: str, default: int, low: int, high: int, why: str = "") -> int:
        raw = self._config.get(name)
        allowed = f"must be an integer from {low} to {high}" + (f" ({why})" if why else "")
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(self.key(name), raw, allowed) from None
        if not low <= value <= high:
            raise ConfigError(self.key(name), value, allowed)
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self._config.get(name)
        if raw is None:
            return default
        if raw.lower() not in ("true", "false"):
            raise ConfigError(self.key(name), raw, "must be true or false")
        return raw.lower() == "true"

    def strings(self, name: str) -> tuple[str, ...]:
        raw = self._config.get(name)
        if raw is None:
            return ()
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(self.key(name), raw, "must be a list of strings")
        return tuple(value)


def parse_cpu(value: str) -> Decimal | None:
    """CPU count of a Cloud Run cpu limit ("0.5", "2", "1000m"), or None when it is not a number."""
    match = _CPU.fullmatch(value)
    if match is None:
        return None
    try:
        if match["milli"] is not None:
            return Decimal(match["milli"]) / 1000
        return Decimal(match["cores"])
    except InvalidOperation:
        return None


def parse_memory(value: str) -> int | None:
    """Bytes in a memory quantity ("512Mi", "2Gi", "1G"), or None when it is not one."""
    match = _MEMORY.fullmatch(value)
    if match is None:
        return None
    return int(match["amount"]) * _MEMORY_UNITS[match["unit"]]


def _format_bytes(amount: int) -> str:
    return f"{amount // GI}Gi" if amount % GI == 0 else f"{amount // MI}Mi"


def memory_range(cpu: Decimal) -> tuple[int, int]:
    """The memory Cloud Run allows with this many CPUs (assumes an allowed CPU value)."""
    if cpu < Decimal("0.5"):
        return MIN_MEMORY, 512 * MI
    if cpu < 1:
        return MIN_MEMORY, GI
    return WHOLE_CPU_MEMORY[int(cpu)]


def _check_cpu(reader: _Reader, cpu: str, concurrency: int) -> Decimal:
    allowed = (
        f"must be a CPU count Cloud Run accepts: one of {', '.join(map(str, WHOLE_CPU_MEMORY))}, "
        "or 0.08 to 0.99 in steps of 0.01 (millicores such as 500m also work)"
    )
    cores = parse_cpu(cpu)
    if cores is None:
        raise ConfigError(reader.key("cpu"), cpu, allowed)
    fractional = Decimal("0.08") <= cores < 1 and cores == cores.quantize(Decimal("0.01"))
    if not fractional and cores not in WHOLE_CPU_MEMORY:
        raise ConfigError(reader.key("cpu"), cpu, allowed)
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
        raise ConfigError(reader.key("memory"), memory, "must be a quantity such as 512Mi, 2Gi or 1G")
    low, high = memory_range(cores)
    if not low <= amount <= high:
        raise ConfigError(
            reader.key("memory"),
            memory,
            f"with cpu {cpu} Cloud Run allows {_format_bytes(low)} to {_format_bytes(high)}",
        )


def _check_invokers(reader: _Reader, invokers: tuple[str, ...]) -> None:
    key = reader.key("invokers")
    for member in invokers:
        if member in ("allUsers", "allAuthenticatedUsers"):
            raise ConfigError(key, member, "public access is allowUnauthenticated's job, not an invoker")
        if not _MEMBER.fullmatch(member):
            raise ConfigError(
                key,
                member,
                "each must be an IAM member: user:EMAIL, group:EMAIL, serviceAccount:EMAIL or domain:NAME",
            )
    if len(set(invokers)) != len(invokers):
        raise ConfigError(key, list(invokers), "members must not repeat")


def _canary_steps(reader: _Reader) -> tuple[int, ...]:
    """canarySteps: increasing percentages from 1 to 100 ending at 100; [100] releases all at once."""
    raw = pulumi.Config().get("canarySteps")
    if raw is None:
        return (10, 50, 100)
    allowed = "must be a list of increasing percentages from 1 to 100 that ends at 100, such as [10, 50, 100]"
    try:
        steps = json.loads(raw)
    except json.JSONDecodeError:
        raise ConfigError(reader.key("canarySteps"), raw, allowed) from None
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


def _pr_revisions(reader: _Reader, github_repository: str) -> bool:
    """The prRevisions key; it needs githubRepository, as its deployer is one of the repository's."""
    enabled = reader.boolean("prRevisions", False)
    if enabled and not github_repository:
        raise ConfigError(reader.key("prRevisions"), True, "needs githubRepository (owner/repo) set as well")
    return enabled


def load() -> StackConfig:
    """Read the stack's config and validate it; raise ConfigError on the first invalid value."""
    gcp = _Reader(pulumi.Config("gcp"))
    read = _Reader(pulumi.Config())

    project = gcp.text("project", "")
    if not _PROJECT_ID.fullmatch(project):
        raise ConfigError(
            gcp.key("project"),
            project,
            "must be a Google Cloud project id (6 to 30 lowercase letters, digits or hyphens; "
            "set it with `pulumi config set gcp:project ID`)",
        )
    region = gcp.text("region", "us-central1", _REGION, "must be a Cloud Run region such as us-central1")

    service_name = read.text(
        "serviceName",
        "catalog-grpc",
        _SERVICE_NAME,
        "must be 2 to 21 lowercase letters, digits or hyphens, start with a letter and not end with a hyphen",
    )
    min_instances = read.integer("minInstances", 0, 0, 1000)
    max_instances = read.integer(
        "maxInstances",
        10,
        max(1, min_instances),
        1000,
        f"at least 1 and at least minInstances, {min_instances}",
    )
    concurrency = read.integer("concurrency", 80, 1, 1000)
    cpu = read.text("cpu", "1")
    cores = _check_cpu(read, cpu, concurrency)
    memory = read.text("memory", "512Mi")
    _check_memory(read, memory, cpu, cores)
    request_timeout_seconds = read.integer("requestTimeoutSeconds", 300, 1, 3600)
    invokers = read.strings("invokers")
    _check_invokers(read, invokers)
    ingress = read.text("ingress", "INGRESS_TRAFFIC_ALL")
    if ingress not in INGRESS_VALUES:
        raise ConfigError(read.key("ingress"), ingress, f"must be one of {', '.join(INGRESS_VALUES)}")
    log_level = read.text("logLevel", "INFO")
    if log_level not in LOG_LEVELS:
        raise ConfigError(read.key("logLevel"), log_level, f"must be one of {', '.join(LOG_LEVELS)}")
    image = read.text(
        "image",
        "",
        _DIGEST_IMAGE,
        "must be pinned by digest (REGISTRY/PATH@sha256:<64 hex digits>): a new image, a new revision",
    )
    github_repository = read.text(
        "githubRepository", "", _GITHUB_REPOSITORY, "must be a GitHub repository as owner/name"
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
        allow_unauthenticated=read.boolean("allowUnauthenticated", False),
        invokers=invokers,
        reflection=read.boolean("reflection", False),
        deletion_protection=read.boolean("deletionProtection", True),
        ingress=ingress,
        image=image or None,
        keep_images=read.integer("keepImages", 10, 1, 1000),
        log_level=log_level,
        github_repository=github_repository or None,
        ci_pool_suffix=read.text(
            "ciPoolSuffix", "1", _POOL_SUFFIX, "must be 1 to 25 lowercase letters or digits"
        ),
        canary_steps=_canary_steps(read),
        canary_pause_seconds=read.integer("canaryPauseSeconds", 60, 0, 3600),
        pr_revisions=_pr_revisions(read, github_repository),
    )
