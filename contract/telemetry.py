"""What counts as the server's failure, and the Cloud Monitoring filters that select the server's metrics.

The Pulumi program's dashboard, SLOs and alerts (infra/catalog_infra/observability.py) and the release gate
(release/monitoring.py) read the same series through these: a call that spends the error budget is the call
that stops a canary. The series are the server's own OpenTelemetry metrics (names in contract.server_metrics);
a move to another metric changes this module and that one alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from contract.server_metrics import (
    CALLS_TYPE,
    DURATION_TYPE,
    METHOD_LABEL,
    MONITORED_RESOURCE,
    REGION_LABEL,
    REVISION_LABEL,
    SERVICE_LABEL,
    STATUS_LABEL,
)

# The codes that are the server's failure, not the caller's. They spend the availability budget.
# - INTERNAL, UNKNOWN, DATA_LOSS: a bug or a broken catalog (the server logs these at ERROR).
# - UNAVAILABLE: the server refused the call (starting, shutting down); the caller did nothing wrong.
# - RESOURCE_EXHAUSTED: the server is at its concurrency limit: too little capacity is ours to fix.
# - DEADLINE_EXCEEDED: the call's own deadline passed while the server worked on it. Catalog calls are
#   in-memory lookups of a few milliseconds, so this means the server was slow (overloaded, starved of CPU).
# Not counted: INVALID_ARGUMENT, NOT_FOUND, OUT_OF_RANGE, FAILED_PRECONDITION (the request's fault), CANCELLED
# (the caller left), and auth codes (Cloud Run's IAM answers those before the server sees the call).
SERVER_FAULT_CODES = (
    "INTERNAL",
    "UNKNOWN",
    "DATA_LOSS",
    "UNAVAILABLE",
    "RESOURCE_EXHAUSTED",
    "DEADLINE_EXCEEDED",
)


def one_of(values: Sequence[str]) -> str:
    """A filter's right-hand side matching any of `values`."""
    return "one_of(" + ", ".join(f'"{value}"' for value in values) + ")"


def method_label_value(full_method: str) -> str:
    """A method as the server's metrics label it (gRFC A66: without the leading slash)."""
    return full_method.lstrip("/")


def server_filter(
    metric_type: str, service: str, *clauses: str, revision: str | None = None, region: str | None = None
) -> str:
    """Time series of one of the server's metrics for `service` with `clauses`, in one revision and region.

    The region is the resource's `location`: a revision has the same name in every region.
    """
    parts = [
        f'metric.type="{metric_type}"',
        f'resource.type="{MONITORED_RESOURCE}"',
        f'{SERVICE_LABEL}="{service}"',
        *clauses,
    ]
    if revision is not None:
        parts.append(f'{REVISION_LABEL} = "{revision}"')
    if region:
        parts.append(f'{REGION_LABEL}="{region}"')
    return " AND ".join(parts)


def calls_filter(
    service: str,
    *,
    faults_only: bool = False,
    revision: str | None = None,
    region: str | None = None,
    calls_type: str = CALLS_TYPE,
) -> str:
    """Time series of the call counter: all calls, or those ending in a server fault code."""
    faults = (f"{STATUS_LABEL} = {one_of(SERVER_FAULT_CODES)}",) if faults_only else ()
    return server_filter(calls_type, service, *faults, revision=revision, region=region)


def error_ratio_filters(
    calls_type: str, service: str, revision: str, region: str | None = None
) -> tuple[str, str]:
    """(all calls, server-fault calls) of one revision: the release gate divides the second by the first."""
    return (
        calls_filter(service, revision=revision, region=region, calls_type=calls_type),
        calls_filter(service, faults_only=True, revision=revision, region=region, calls_type=calls_type),
    )


def latency_filter(
    service: str, methods: Sequence[str], *, revision: str | None = None, region: str | None = None
) -> str:
    """Time series of the duration distribution of calls to `methods` (full names, /pkg.Service/Method)."""
    names = one_of([method_label_value(method) for method in methods])
    return server_filter(
        DURATION_TYPE, service, f"{METHOD_LABEL} = {names}", revision=revision, region=region
    )
