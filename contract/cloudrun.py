"""What Cloud Run accepts of a service: for the program's config, the policy pack and the admission model.

The CPU and memory table (sources: cloud.google.com/run/docs/configuring/services/cpu and .../memory-limits,
"memory required when setting a CPU value"), then the admission rules Cloud Run enforces that a provider and
Pulumi's mocks do not, each with its source. Pure Python: the policy pack's own virtualenv imports it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

MI = 2**20
GI = 2**30
# 128Mi is the smallest memory Cloud Run takes at all.
MIN_MEMORY = 128 * MI
# Whole CPU counts Cloud Run accepts, with the memory each allows. Below 1 CPU (0.08 to 0.99 in steps of 0.01,
# concurrency 1): up to 512Mi under 0.5 CPU, up to 1Gi from 0.5 CPU.
WHOLE_CPU_MEMORY = {
    1: (MIN_MEMORY, 4 * GI),
    2: (MIN_MEMORY, 8 * GI),
    4: (2 * GI, 16 * GI),
    6: (4 * GI, 24 * GI),
    8: (4 * GI, 32 * GI),
}
MIN_FRACTIONAL_CPU = Decimal("0.08")
# What Cloud Run uses for an unset limit.
DEFAULT_CPU, DEFAULT_MEMORY = "1000m", "512Mi"
DEFAULT_CONCURRENCY = 80

# Quantities as Kubernetes writes them, the form Cloud Run takes: binary (Ki, Mi, Gi) or decimal (k, M, G).
_MEMORY_UNITS = {"Ki": 2**10, "Mi": MI, "Gi": GI, "k": 10**3, "M": 10**6, "G": 10**9}
_CPU = re.compile(r"(?P<cores>[0-9]+(?:\.[0-9]+)?)|(?P<milli>[0-9]+)m")
_MEMORY = re.compile(rf"(?P<amount>[1-9][0-9]*)(?P<unit>{'|'.join(_MEMORY_UNITS)})")

CPU_ALLOWED = (
    f"a CPU count Cloud Run accepts: one of {', '.join(map(str, WHOLE_CPU_MEMORY))}, "
    "or 0.08 to 0.99 in steps of 0.01 (millicores such as 500m also work)"
)
MEMORY_ALLOWED = "a quantity such as 512Mi, 2Gi or 1G"


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
    return int(match["amount"]) * _MEMORY_UNITS[match["unit"]] if match else None


def cpu_allowed(cores: Decimal) -> bool:
    """Whether Cloud Run accepts this many CPUs: a whole count from the table, or a fraction in hundredths."""
    if cores < 1:
        return cores >= MIN_FRACTIONAL_CPU and cores == cores.quantize(Decimal("0.01"))
    return cores == cores.to_integral_value() and int(cores) in WHOLE_CPU_MEMORY


def memory_range(cores: Decimal) -> tuple[int, int] | None:
    """The memory Cloud Run allows with this many CPUs; None when it does not accept the CPU count."""
    if not cpu_allowed(cores):
        return None
    if cores < Decimal("0.5"):
        return MIN_MEMORY, 512 * MI
    if cores < 1:
        return MIN_MEMORY, GI
    return WHOLE_CPU_MEMORY[int(cores)]


def format_bytes(amount: int) -> str:
    """A memory amount as Cloud Run's limits write it (whole Gi, else Mi)."""
    return f"{amount // GI}Gi" if amount % GI == 0 else f"{amount // MI}Mi"


# Regions Cloud Run serves from (cloud.google.com/run/docs/locations, tier 1 and tier 2). A region Google adds
# later is refused until it is added here: a typo must not become a failed `up` halfway through.
CLOUD_RUN_REGIONS = frozenset(
    """africa-south1 asia-east1 asia-east2 asia-northeast1 asia-northeast2 asia-northeast3 asia-south1
    asia-south2 asia-southeast1 asia-southeast2 australia-southeast1 australia-southeast2 europe-central2
    europe-north1 europe-north2 europe-southwest1 europe-west1 europe-west2 europe-west3 europe-west4
    europe-west6 europe-west8 europe-west9 europe-west10 europe-west12 me-central1 me-central2 me-west1
    northamerica-northeast1 northamerica-northeast2 northamerica-south1 southamerica-east1 southamerica-west1
    us-central1 us-east1 us-east4 us-east5 us-south1 us-west1 us-west2 us-west3 us-west4""".split()  # noqa: SIM905
)


# ---- Admission rules: what Cloud Run refuses although a provider (and Pulumi's mocks) accept it ----
# Each function reads a Cloud Run v2 service as the engine sends it (camelCase properties: the program's
# recorded inputs, or a policy pack's props) and returns one line per problem, [] when Cloud Run would accept
# it. Absent values mean Cloud Run's defaults. The policy pack and the tests' admission model both call these.

SOURCE_LAUNCH_STAGE = (
    "pulumi-gcp cloudrunv2.Service.launch_stage ('If no value is specified, GA is assumed. Set the launch "
    "stage to a preview stage on input to allow use of preview features'); terraform-provider-google "
    'google/services/cloudrunv2/resource_cloud_run_v2_service_test.go sets launch_stage = "BETA" in every '
    "readiness-probe test"
)
SOURCE_READINESS_PREVIEW = "cloud.google.com/run/docs/configuring/healthchecks ('Readiness probes (Preview)')"
SOURCE_PROBE = (
    "cloud.google.com/run/docs/reference/rest/v2/Container#Probe (timeoutSeconds 'Must be smaller than "
    "periodSeconds', periodSeconds 'Must be greater or equal than timeoutSeconds'; maxima per kind); "
    "cloud.google.com/run/docs/configuring/healthchecks (startup: failureThreshold x periodSeconds <= 240 s)"
)
SOURCE_SERVICE_NAME = (
    "Cloud Run's service name check: 'may only start with a letter and contain up to 49 lowercase letters, "
    "numbers or hyphens' (cloud.google.com/run/docs/deploying)"
)
SOURCE_REVISION_NAME = (
    "cloud.google.com/run/docs/reference/rest/v2/projects.locations.services#RevisionTemplate (revision: "
    "'must be prefixed by the name of the enclosing Service or Configuration with a trailing -'); a revision "
    "name is a DNS label (RFC 1123, at most 63 characters)"
)
SOURCE_TAG = (
    "cloud.google.com/run/docs/rollouts-rollbacks-traffic-migration (a tag becomes the DNS label prefix "
    "TAG--- of the revision's URL: lowercase letters, digits and hyphens)"
)
SOURCE_ACCOUNT_ID = "cloud.google.com/iam/docs/service-accounts-create (account id: 6 to 30 characters)"
SOURCE_RESOURCES = (
    "cloud.google.com/run/docs/configuring/services/cpu, .../memory-limits, "
    ".../configuring/concurrency (at most 1000; below 1 CPU, concurrency 1)"
)
SOURCE_EXECUTION_ENVIRONMENT = (
    "cloud.google.com/run/docs/about-execution-environments (network file systems are a second-generation "
    "feature; 'The second generation execution environment requires at least 512 MiB of memory')"
)
SOURCE_INGRESS = (
    "cloud.google.com/run/docs/securing/ingress (All: the internet, run.app and tag URLs included; Internal "
    "and Cloud Load Balancing: the external Application Load Balancer and internal sources; Internal: "
    "internal sources only)"
)
SOURCE_AUDIENCES = (
    "cloud.google.com/run/docs/configuring/custom-audiences (the run.app URL stays accepted; custom "
    "audiences apply to all serving revisions; their JSON list at most 32768 bytes)"
)

# From least to most stable: a service may declare a less stable stage than its features need, never a more
# stable one.
LAUNCH_STAGES = ("ALPHA", "BETA", "GA")
GA = "GA"


@dataclass(frozen=True)
class PreviewFeature:
    """A Cloud Run feature the API takes only from a service whose launch stage is `launch_stage` or less."""

    name: str
    launch_stage: str
    source: str
    used: Callable[[Mapping[str, Any]], bool]


def _get(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    return [value]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def containers(service: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The service template's containers."""
    return [c for c in _list(_get(service, "template", "containers")) if isinstance(c, Mapping)]


def _uses_readiness_probe(service: Mapping[str, Any]) -> bool:
    return any(_get(container, "readinessProbe") is not None for container in containers(service))


PREVIEW_FEATURES = (
    PreviewFeature("readiness probes", "BETA", SOURCE_READINESS_PREVIEW, _uses_readiness_probe),
)


def preview_features(service: Mapping[str, Any]) -> list[PreviewFeature]:
    """The preview features the service uses."""
    return [feature for feature in PREVIEW_FEATURES if feature.used(service)]


def required_launch_stage(service: Mapping[str, Any]) -> str:
    """The most stable launch stage that allows every preview feature the service uses (GA when none)."""
    return min((f.launch_stage for f in preview_features(service)), key=LAUNCH_STAGES.index, default=GA)


def launch_stage_problems(service: Mapping[str, Any]) -> list[str]:
    """The declared launchStage (absent: GA) against the preview features in use."""
    declared = _get(service, "launchStage") or GA
    if declared not in LAUNCH_STAGES:
        return [f"launchStage {declared!r} is not one of {', '.join(LAUNCH_STAGES)}"]
    return [
        f"{feature.name} are a preview feature ({feature.source}): Cloud Run refuses them unless "
        f"launchStage is {feature.launch_stage} or less stable, and it is {declared}"
        for feature in preview_features(service)
        if LAUNCH_STAGES.index(declared) > LAUNCH_STAGES.index(feature.launch_stage)
    ]


PROBE_KINDS = ("startupProbe", "livenessProbe", "readinessProbe")
# The API's defaults for a field left out.
DEFAULT_PROBE_PERIOD_SECONDS, DEFAULT_PROBE_TIMEOUT_SECONDS, DEFAULT_PROBE_FAILURE_THRESHOLD = 10, 1, 3
# Per kind, the largest periodSeconds the API takes; a startup probe must also pass within its window.
MAX_PROBE_PERIOD_SECONDS = {"startupProbe": 240, "livenessProbe": 3600}
MAX_STARTUP_WINDOW_SECONDS = 240


def probe_problems(kind: str, probe: Mapping[str, Any]) -> list[str]:
    """One probe's timings: timeout smaller than period (both readings of the API), the maxima, the window."""
    period = _number(_get(probe, "periodSeconds")) or DEFAULT_PROBE_PERIOD_SECONDS
    timeout = _number(_get(probe, "timeoutSeconds")) or DEFAULT_PROBE_TIMEOUT_SECONDS
    threshold = _number(_get(probe, "failureThreshold")) or DEFAULT_PROBE_FAILURE_THRESHOLD
    problems = []
    if min(period, timeout, threshold) < 1:
        problems.append(f"{kind}: periodSeconds, timeoutSeconds and failureThreshold must each be at least 1")
    if not timeout < period:
        problems.append(
            f"{kind}: timeoutSeconds {timeout:g} must be smaller than periodSeconds {period:g} (the API "
            "reference says both 'smaller than period' and 'period greater or equal than timeout': smaller "
            "satisfies both)"
        )
    maximum = MAX_PROBE_PERIOD_SECONDS.get(kind)
    if maximum is not None and period > maximum:
        problems.append(f"{kind}: periodSeconds {period:g} is over the {maximum} s Cloud Run allows")
    if kind == "startupProbe" and period * threshold > MAX_STARTUP_WINDOW_SECONDS:
        problems.append(
            f"{kind}: failureThreshold x periodSeconds = {period * threshold:g} s is over the "
            f"{MAX_STARTUP_WINDOW_SECONDS} s a startup probe may take"
        )
    return problems


def probes_problems(service: Mapping[str, Any]) -> list[str]:
    """Every probe of every container."""
    return [
        problem
        for container in containers(service)
        for kind in PROBE_KINDS
        if isinstance(probe := _get(container, kind), Mapping)
        for problem in probe_problems(kind, probe)
    ]


MAX_SERVICE_NAME = 49
MAX_REVISION_NAME = 63
_DNS_LABEL = re.compile(r"[a-z](?:[a-z0-9-]*[a-z0-9])?")
_ACCOUNT_ID = re.compile(r"[a-z](?:[a-z0-9-]{4,28}[a-z0-9])")


def service_name_problems(name: str) -> list[str]:
    """A Cloud Run service's name: a letter first, lowercase letters, digits, hyphens, at most 49."""
    if len(name) <= MAX_SERVICE_NAME and _DNS_LABEL.fullmatch(name):
        return []
    return [
        f"service name {name!r}: start with a letter, use only lowercase letters, digits and hyphens, do not "
        f"end with a hyphen, at most {MAX_SERVICE_NAME} characters"
    ]


def revision_name_problems(service_name: str, revision: str) -> list[str]:
    """A revision's name: the service's name and a dash first, a DNS label of at most 63 characters."""
    problems = []
    if not revision.startswith(f"{service_name}-"):
        problems.append(
            f"revision {revision!r} must start with the service's name and a dash: {service_name}-"
        )
    if len(revision) > MAX_REVISION_NAME or not _DNS_LABEL.fullmatch(revision):
        problems.append(
            f"revision {revision!r} must be a DNS label: lowercase letters, digits and hyphens, at most "
            f"{MAX_REVISION_NAME} characters"
        )
    return problems


def tag_problems(tag: str) -> list[str]:
    """A traffic tag: the DNS label prefix of its URL."""
    if len(tag) <= MAX_REVISION_NAME and _DNS_LABEL.fullmatch(tag):
        return []
    return [f"tag {tag!r}: a letter first, then lowercase letters, digits and hyphens, not ending in one"]


def account_id_problems(account_id: str) -> list[str]:
    """A service account's id: 6 to 30 lowercase letters, digits or hyphens, a letter first."""
    if _ACCOUNT_ID.fullmatch(account_id):
        return []
    return [
        f"service account id {account_id!r}: 6 to 30 lowercase letters, digits or hyphens; a letter first"
    ]


MAX_CONCURRENCY = 1000


def resource_problems(cpu: str, memory: str, concurrency: int) -> list[str]:
    """A container's CPU and memory limits with the revision's concurrency, as Cloud Run accepts them."""
    cores = parse_cpu(cpu)
    allowed = memory_range(cores) if cores is not None else None
    if cores is None or allowed is None:
        return [f"cpu {cpu!r} is not {CPU_ALLOWED}"]
    problems = []
    amount = parse_memory(memory)
    low, high = allowed
    if amount is None:
        problems.append(f"memory {memory!r} is not {MEMORY_ALLOWED}")
    elif not low <= amount <= high:
        problems.append(
            f"memory {memory} with cpu {cpu}: Cloud Run allows {format_bytes(low)} to {format_bytes(high)} "
            "with that CPU"
        )
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        problems.append(f"concurrency {concurrency} is not from 1 to {MAX_CONCURRENCY}")
    elif cores < 1 and concurrency != 1:
        problems.append(f"cpu {cpu} is below 1 CPU, which Cloud Run allows only with concurrency 1")
    return problems


def service_resource_problems(service: Mapping[str, Any]) -> list[str]:
    """resource_problems for every container of the service (absent limits are Cloud Run's defaults)."""
    concurrency = _number(_get(service, "template", "maxInstanceRequestConcurrency"))
    return [
        problem
        for container in containers(service)
        for problem in resource_problems(
            _get(container, "resources", "limits", "cpu") or DEFAULT_CPU,
            _get(container, "resources", "limits", "memory") or DEFAULT_MEMORY,
            int(concurrency) if concurrency is not None else DEFAULT_CONCURRENCY,
        )
    ]


GEN2 = "EXECUTION_ENVIRONMENT_GEN2"
MIN_GEN2_MEMORY = 512 * MI


def execution_environment_problems(service: Mapping[str, Any]) -> list[str]:
    """Cloud Storage volumes declare the second generation, which needs at least 512Mi in each container."""
    environment = _get(service, "template", "executionEnvironment")
    problems = []
    mounts = [v for v in _list(_get(service, "template", "volumes")) if _get(v, "gcs") is not None]
    if mounts and environment != GEN2:
        problems.append(
            f"Cloud Storage volume {_get(mounts[0], 'name')!r} is a network file system, which the second "
            f"generation offers: set template.executionEnvironment = {GEN2}"
        )
    if environment == GEN2:
        for container in containers(service):
            memory = _get(container, "resources", "limits", "memory") or DEFAULT_MEMORY
            amount = parse_memory(memory)
            if amount is not None and amount < MIN_GEN2_MEMORY:
                problems.append(f"memory {memory}: the second generation needs at least 512Mi")
    return problems


# Where a request comes from, as ingress settings tell them apart.
INTERNET, LOAD_BALANCER, INTERNAL = "the internet", "the external load balancer", "internal sources"
INGRESS_ADMITS = {
    "INGRESS_TRAFFIC_ALL": frozenset({INTERNET, LOAD_BALANCER, INTERNAL}),
    "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER": frozenset({LOAD_BALANCER, INTERNAL}),
    "INGRESS_TRAFFIC_INTERNAL_ONLY": frozenset({INTERNAL}),
}
DEFAULT_INGRESS = "INGRESS_TRAFFIC_ALL"


def ingress_problems(service: Mapping[str, Any], who: str, source: str) -> list[str]:
    """Whether the service's ingress admits `who` (what must reach it), coming from `source`."""
    ingress = _get(service, "ingress") or DEFAULT_INGRESS
    if source in INGRESS_ADMITS.get(ingress, frozenset()):
        return []
    return [f"ingress {ingress} refuses requests from {source}, and {who} comes from there"]


MAX_AUDIENCES_JSON_BYTES = 32768


def audience_problems(service: Mapping[str, Any], audience: str) -> list[str]:
    """The service accepts ID tokens minted for `audience`: one of its custom audiences (size-limited)."""
    audiences = [a for a in _list(_get(service, "customAudiences")) if isinstance(a, str)]
    problems = []
    if len(json.dumps(audiences).encode()) > MAX_AUDIENCES_JSON_BYTES:
        problems.append(f"customAudiences take at most {MAX_AUDIENCES_JSON_BYTES} bytes as a JSON list")
    if audience not in audiences:
        problems.append(f"ID tokens are minted for {audience!r}, which is not in customAudiences {audiences}")
    return problems
