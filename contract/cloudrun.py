"""What Cloud Run accepts for a container's CPU and memory, for the program's config and the policy pack.

Sources: cloud.google.com/run/docs/configuring/services/cpu and .../memory-limits ("memory required when
setting a CPU value").
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

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
